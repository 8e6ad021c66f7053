"""The IDLE watcher against a real Dovecot: what it must not miss, a folder replaced under it."""

from __future__ import annotations

import threading
import time

from mailflow.localmail.samples import sample_replies
from mailflow.running.watch import Watcher


def _watcher(config, stored):
    return Watcher(config.imap, threading.Event(), stored=stored)


def _status(localmail, user, folder="INBOX"):
    client = localmail.imap(user)
    try:
        status = client.folder_status(folder, [b"UIDVALIDITY", b"UIDNEXT"])
    finally:
        client.logout()
    return int(status[b"UIDVALIDITY"]), int(status[b"UIDNEXT"]) - 1


def test_mail_arriving_just_before_idle_is_announced(localmail, make_config):
    """Dovecot sends its EXISTS with the IDLE continuation, where polling the socket
    cannot see it: the watcher must read it all the same."""
    config = make_config()
    user = config.imap.username
    localmail.append(user, sample_replies(1, seed=1))
    state = _status(localmail, user)
    armed = []

    def stored(folder):
        if armed and not armed[0]:  # after the STATUS that showed nothing new, before IDLE
            localmail.append(user, sample_replies(2, seed=2)[1:])
            armed[0] = True
        return state

    watcher = _watcher(config, stored)
    try:
        assert watcher.wait(0.2) == "timeout"  # connected: nothing new
        armed.append(False)
        start = time.monotonic()
        assert watcher.wait(10) == "mail"
        print(f"announced after {time.monotonic() - start:.2f} s")
        assert time.monotonic() - start < 2
    finally:
        watcher.close()


def test_a_recreated_folder_with_lower_uids_is_mail(localmail, make_config):
    """Stored up to UID 3 of the old folder; the new one holds UID 1: that is mail."""
    config = make_config(imap={"folders": ["Replies"]})
    user = config.imap.username
    localmail.append(user, sample_replies(3, seed=3), "Replies")
    old = _status(localmail, user, "Replies")
    watcher = _watcher(config, lambda folder: old)
    try:
        assert watcher.wait(0.2) == "timeout"
        client = localmail.imap(user)
        client.delete_folder("Replies")
        client.create_folder("Replies")
        client.append("Replies", sample_replies(4, seed=3)[3])
        client.logout()
        outcomes = [watcher.wait(5) for _ in range(3)]
        assert "mail" in outcomes[:2], outcomes  # at the BYE, or at the next check
        assert watcher.selected == _status(localmail, user, "Replies")[0] != old[0]
    finally:
        watcher.close()


def test_a_missing_folder_is_looked_for_until_it_is_back(localmail, make_config):
    config = make_config(imap={"folders": ["Later"]})
    user = config.imap.username
    watcher = _watcher(config, lambda folder: (0, 0))

    def create():
        time.sleep(1.0)
        client = localmail.imap(user)
        client.create_folder("Later")
        client.logout()

    creator = threading.Thread(target=create)
    try:
        assert watcher.wait(0.3) == "timeout"  # connected; the folder is not there
        assert watcher.selected == 0
        creator.start()
        start = time.monotonic()
        assert watcher.wait(10) == "mail"
        assert time.monotonic() - start < 2
        assert watcher.selected == _status(localmail, user, "Later")[0]
        assert watcher.wait(0.5) == "timeout"  # and it idles on it
    finally:
        creator.join()
        watcher.close()


def test_mail_not_stored_by_the_last_pass_is_announced_once(localmail, make_config):
    """A pass whose fetch failed stores nothing: the watcher idles instead of looping."""
    config = make_config()
    localmail.append(config.imap.username, sample_replies(1, seed=4))
    watcher = _watcher(config, lambda folder: (0, 0))
    try:
        assert watcher.wait(0.3) == "mail"
        assert watcher.wait(0.3) == "timeout"
        localmail.append(config.imap.username, sample_replies(2, seed=5)[1:])
        assert watcher.wait(5) == "mail"  # more mail: announced again
    finally:
        watcher.close()
