"""LCEL chains: text-to-SQL with its repair loop, the answer sentence, routing and chat."""
