"""The LLM engine: routing, chat, follow-up rewriting, text-to-SQL with its repair loop, the
answer sentence, and token budgets. Every step takes the chat model as a parameter
(:class:`~tablechat.agent.client.LLMClient`), so tests use scripted models."""
