"""Step kinds and command verbs are registries: adding one is a class (or a handler) and its
templates; the loader checks each workflow's and each verb's against them."""

from __future__ import annotations

import shutil

import pytest

from mailflow.errors import ConfigError
from mailflow.programme.kinds import KINDS, Kind, register
from mailflow.receiving.commands import Vocabulary

from .conftest import ROOT, text_of
from .test_retro import at


@pytest.fixture
def thanks_kind():
    """A toy kind: a thank-you to each défi that answered, with how many défis did."""

    @register
    class Thanks(Kind):
        name = "thanks"
        audiences = ("each_defi",)
        reads_answers = True

        def context(self, db, mailer, occ, step, now):
            from mailflow.store import inbound

            return {"answered_count": len(inbound.answered(db, occ.workflow.name, occ.id))}

    yield Thanks
    del KINDS["thanks"]


def test_a_new_step_kind_is_one_class_plus_its_templates(thanks_kind, programme, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    for language in ("fr", "en"):
        (templates / "retro" / f"thanks.{language}.txt.j2").write_text(
            "Subject: {{ answered_count }} / {{ who.name }}\n{{ answered_count }} answered.\n"
        )
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    retro = (ROOT / "workflows" / "retro.toml").read_text()
    retro += (
        '\n[[steps]]\nid = "thanks"\nat = "16:00"\naction = "thanks"\n'
        'template = "retro/thanks"\nto = "each_defi"\nonly = "answered"\n'
    )
    (workflows / "retro.toml").write_text(retro)
    p = programme(
        {"alpha": 1, "beta": 1},
        mailflow={"workflows": str(workflows), "templates": str(templates)},
    )
    from mailflow.localmail import clients

    p.tick(at("09:00"))
    a0 = p.defis["alpha"][0]
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "A", "Victoires :\nune"), a0)
    p.wait_shared(1)
    for time in ("12:00", "14:00", "15:00", "16:00"):
        p.tick(at(time))
    thanks = [m for m in p.inbox(a0) if str(m["Subject"]).startswith("1 / ")]
    assert len(thanks) == 1 and text_of(thanks[0]).startswith("1 answered.")
    assert not [m for m in p.inbox(p.defis["beta"][0]) if str(m["Subject"]).startswith("1 / ")]


def test_a_kind_checks_its_options_when_workflows_load(thanks_kind, tmp_path):
    from mailflow.programme.workflow import load_workflow

    retro = (ROOT / "workflows" / "retro.toml").read_text()
    path = tmp_path / "retro.toml"
    path.write_text(retro + '\n[[steps]]\nid = "t"\nat = "16:00"\naction = "thanks"\n'
                    'template = "retro/thanks"\nto = "cohort"\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r'step "t"\.to: expected \'each_defi\''):
        load_workflow(path)
    path.write_text(retro.replace('action = "send"', 'action = "shout"', 1))
    with pytest.raises(ConfigError, match=r"action: expected one of 'send', 'digest'.*'thanks'"):
        load_workflow(path)


def test_every_verb_of_the_vocabulary_needs_a_handler(tmp_path):
    text = (ROOT / "templates" / "commands.toml").read_text()
    path = tmp_path / "commands.toml"
    path.write_text(text.replace("[verbs]\n", '[verbs]\ndance = ["danser"]\n'))
    with pytest.raises(ConfigError, match=r"verbs\.dance: expected a verb mailflow can carry out"):
        Vocabulary.load(path)
    assert Vocabulary.load(ROOT / "templates" / "commands.toml").verbs["help"]
