"""chat_service: conversations, membership, messages, history, receipts and event streams."""
