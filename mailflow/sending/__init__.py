"""What goes out: templates rendered into MIME, SMTP delivery per recipient of the keyed
outbox (kept in ``store.outgoing``), invitations, and the staff's notices."""
