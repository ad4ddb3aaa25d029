"""The admin REST API (`/v1/admin/...`): instance staff moderate users, conversations and reports."""
