{{/*
Names and labels shared by every template.

Every object carries Helm's standard labels (troupe.labels): helm.sh/chart,
app.kubernetes.io/name, instance, version, managed-by, plus part-of and a component.
Selectors use only the labels that never change across upgrades (troupe.selectorLabels
plus the component): a Deployment's selector is immutable.
*/}}

{{- define "troupe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: the release's own when it already contains the chart's. */}}
{{- define "troupe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "troupe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's Deployment, ServiceAccount, ClusterRole, binding and Lease: "troupe-operator" for release "troupe". */}}
{{- define "troupe.operator.name" -}}
{{- printf "%s-operator" (include "troupe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "troupe.metrics.name" -}}
{{- printf "%s-operator-metrics" (include "troupe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "troupe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "troupe.operator.name" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the ServiceAccount to run the operator as, when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "troupe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "troupe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "troupe.labels" -}}
helm.sh/chart: {{ include "troupe.chart" . }}
{{ include "troupe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: troupe
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The operator's pods: what the Deployment, its Service and its PodDisruptionBudget select. */}}
{{- define "troupe.operator.selectorLabels" -}}
{{ include "troupe.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "troupe.operator.labels" -}}
{{ include "troupe.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to the chart's appVersion. */}}
{{- define "troupe.image" -}}
{{- $image := index . 0 }}
{{- $context := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $context.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "troupe.operator.image" -}}
{{- include "troupe.image" (list .Values.image .) }}
{{- end }}

{{- define "troupe.agent.image" -}}
{{- include "troupe.image" (list .Values.agentImage .) }}
{{- end }}

{{/* Whether the cluster serves the Prometheus Operator's API (ServiceMonitor, PodMonitor). */}}
{{- define "troupe.monitoring.available" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{- end }}
{{- end }}

{{/*
checkov's suppressions of a pod's workload, as annotations (checkov.io/skipN: ID=reason), each
with its reason. Takes (list $context $image $skips): $skips, "ID=reason" strings, always; the
image checks only while the values leave them open (no digest, pullPolicy not Always). A
reason holds no "=" (checkov splits on it).
*/}}
{{- define "troupe.checkov.skips" -}}
{{- $context := index . 0 }}
{{- $image := index . 1 }}
{{- $skips := index . 2 }}
{{- if not $image.digest }}
{{- $skips = append $skips "CKV_K8S_43=tagged by default (the chart cannot know the digest of an image built after it); image.digest pins it" }}
{{- end }}
{{- if ne $context.Values.image.pullPolicy "Always" }}
{{- $skips = append $skips "CKV_K8S_15=IfNotPresent: a pod restarts from the node's copy while the registry is down; image.digest pins the image instead of pulling at each start" }}
{{- end }}
{{- $lines := list }}
{{- range $index, $skip := $skips }}
{{- $lines = append $lines (printf "checkov.io/skip%d: %s" (add1 $index) ($skip | quote)) }}
{{- end }}
{{- join "\n" $lines }}
{{- end }}
