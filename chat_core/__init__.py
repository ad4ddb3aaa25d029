"""chat_core: the single writer of a conversation. validate -> authorize -> sequence -> persist + outbox."""
