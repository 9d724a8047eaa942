"""The answer stage: question + retrieved chunks → a grounded Answer with verified citations.

base (the Answerer protocol, context numbering, citations, abstention) · sentences (splitting) ·
support (support and question-support scores, calibrated thresholds) · citations (verify_citations) ·
extractive (the offline default) · llm (LangChain chat models, create_chat_model).
"""
