"""Troupe agent runtime: LangGraph agents on OpenAI-compatible models, in task and serve modes."""
