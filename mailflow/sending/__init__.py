"""What goes out: templates rendered into MIME, the keyed outbox, SMTP delivery per
recipient, invitations, and the staff's notices."""
