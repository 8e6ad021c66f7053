"""What comes in: the mailbox read by UID, raw bytes stored first, then parsed (MIME,
automatic mail, what the sender wrote, sections), and what each message is taken for: an
answer, a bounce, a command or help request to the staff alias."""
