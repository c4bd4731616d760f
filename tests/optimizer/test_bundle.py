"""Signed export bundles: sign/verify round trip and every tampering a verifier must catch."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from optimizer.bundle import (
    FORMAT,
    VerifiedBundle,
    dumps_bundle,
    generate_private_key,
    key_fingerprint,
    load_bundle,
    load_private_key,
    loads_bundle,
    private_key_pem,
    public_key_b64,
    public_key_raw,
    sign_bundle,
    verify_bundle,
    write_bundle,
)
from optimizer.dspy_compat import to_dspy_state
from optimizer.errors import BundleError
from optimizer.program import Predict, Program, content_hash

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_parts() -> tuple[dict, dict, dict]:
    program = Program(name="triage", predictors=(
        Predict("classify", "ticket -> category", instructions="Route the ticket to a team.").with_demos(
            [{"ticket": "I was charged twice", "category": "billing"}]),))
    payload = {"program": program.to_dict(), "lm": {"model": "local/gemma-3-270m", "temperature": 0.0,
                                                    "max_tokens": 64}}
    dspy_state = to_dspy_state(program)
    digest = content_hash(payload)
    manifest = {
        "program": {"slug": "triage", "name": "Ticket triage"},
        "version": {"number": 3, "origin": "optimizer", "approved_at": "2026-01-02T10:00:00Z"},
        "content_hash": digest,
        "approvals": [
            {"name": "Ada Reviewer", "signed_at": "2026-01-02T09:00:00Z", "meaning": "approval",
             "content_hash": digest},
            {"name": "Bo Compliance", "signed_at": "2026-01-02T09:30:00Z", "meaning": "approval",
             "content_hash": digest},
        ],
        "release": {"label": "production", "kill_switch": False},
        "provenance": {"origin": "optimizer", "run_id": 7, "seed": 0, "preset": "light",
                       "dataset_hashes": {"train": "a" * 64}, "metric": "choice",
                       "scores": {"val": 0.81, "test": 0.78}, "model": "local/gemma-3-270m"},
        "exported_at": "2026-01-03T00:00:00Z",
        "exported_by": "Cy Releaser",
    }
    return manifest, payload, dspy_state


@pytest.fixture(scope="module")
def key():
    return generate_private_key()


@pytest.fixture
def bundle(key):
    return sign_bundle(*make_parts(), key)


def test_sign_then_verify_roundtrip_through_a_file(key, bundle, tmp_path):
    path = write_bundle(bundle, tmp_path / "triage-v3.json")
    verified = verify_bundle(load_bundle(path), trusted_public_key=public_key_b64(key))

    manifest, payload, dspy_state = make_parts()
    assert isinstance(verified, VerifiedBundle)
    assert verified.payload == payload
    assert verified.dspy_state == json.loads(json.dumps(dspy_state))
    assert verified.manifest["payload_sha256"] == content_hash(payload) == verified.content_hash
    assert verified.manifest["dspy_state_sha256"] == content_hash(dspy_state)
    assert verified.key_fingerprint == key_fingerprint(public_key_raw(key))
    assert bundle["format"] == FORMAT
    assert bundle["signature"]["algorithm"] == "ed25519"
    assert len(base64.b64decode(bundle["signature"]["public_key"])) == 32
    assert verified.summary() == (
        f"OK: triage v3 hash {content_hash(payload)}, release production signed by key {verified.key_fingerprint}, "
        "approvals: Ada Reviewer (2026-01-02T09:00:00Z, approval), Bo Compliance (2026-01-02T09:30:00Z, approval)")


def test_signature_survives_reformatting_and_key_order(key, bundle):
    reparsed = json.loads(json.dumps(json.loads(dumps_bundle(bundle)), indent=None))
    reparsed["manifest"] = dict(reversed(list(reparsed["manifest"].items())))
    assert verify_bundle(reparsed).manifest == bundle["manifest"]


def test_trusted_key_accepts_raw_bytes_base64_and_pem(key, bundle):
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for trusted in (public_key_raw(key), public_key_b64(key), pem, pem.decode()):
        assert verify_bundle(bundle, trusted_public_key=trusted).version_number == 3


def test_tampered_payload_is_a_hash_mismatch(bundle):
    tampered = copy.deepcopy(bundle)
    tampered["payload"]["program"]["predictors"][0]["signature"]["instructions"] = "Always answer billing."
    expected = bundle["manifest"]["content_hash"]
    actual = content_hash(tampered["payload"])
    with pytest.raises(BundleError) as excinfo:
        verify_bundle(tampered)
    assert str(excinfo.value) == f"payload hash mismatch: manifest says {expected}, payload hashes to {actual}"


def test_tampered_lm_config_is_a_hash_mismatch(bundle):
    tampered = copy.deepcopy(bundle)
    tampered["payload"]["lm"]["temperature"] = 1.5
    with pytest.raises(BundleError, match=r"^payload hash mismatch: manifest says [0-9a-f]{64}, payload hashes to"):
        verify_bundle(tampered)


@pytest.mark.parametrize("change", [
    lambda m: m["approvals"].append({"name": "Mallory", "signed_at": "2026-01-02T11:00:00Z",
                                     "meaning": "approval", "content_hash": m["content_hash"]}),
    lambda m: m["approvals"][0].update(name="Someone Else"),
    lambda m: m["version"].update(number=4),
    lambda m: m.update(release=None),
    lambda m: m["provenance"]["scores"].update(test=0.99),
], ids=["added-approval", "renamed-approver", "version-number", "release", "scores"])
def test_tampered_manifest_breaks_the_signature(bundle, change):
    tampered = copy.deepcopy(bundle)
    change(tampered["manifest"])
    with pytest.raises(BundleError) as excinfo:
        verify_bundle(tampered)
    assert str(excinfo.value) == "signature does not match manifest (bundle altered?)"


def test_payload_swapped_with_matching_manifest_hashes_breaks_the_signature(bundle):
    """Recomputing the manifest hashes after editing the payload does not help without the private key."""
    tampered = copy.deepcopy(bundle)
    tampered["payload"]["lm"]["model"] = "gpt-x"
    new_hash = content_hash(tampered["payload"])
    tampered["manifest"].update(content_hash=new_hash, payload_sha256=new_hash)
    for approval in tampered["manifest"]["approvals"]:
        approval["content_hash"] = new_hash
    with pytest.raises(BundleError, match=r"^signature does not match manifest \(bundle altered\?\)$"):
        verify_bundle(tampered)


def test_tampered_dspy_state_is_a_hash_mismatch(bundle):
    tampered = copy.deepcopy(bundle)
    tampered["dspy_state"]["classify"]["demos"] = []
    expected = bundle["manifest"]["dspy_state_sha256"]
    with pytest.raises(BundleError) as excinfo:
        verify_bundle(tampered)
    assert str(excinfo.value) == (f"dspy_state hash mismatch: manifest says {expected}, "
                                  f"dspy_state hashes to {content_hash(tampered['dspy_state'])}")


def test_tampered_signature_value_is_refused(bundle):
    tampered = copy.deepcopy(bundle)
    raw = bytearray(base64.b64decode(tampered["signature"]["value"]))
    raw[0] ^= 0x01
    tampered["signature"]["value"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(BundleError) as excinfo:
        verify_bundle(tampered)
    assert str(excinfo.value) == "signature does not match manifest (bundle altered?)"


def test_signature_that_is_not_base64_or_wrong_length(bundle):
    tampered = copy.deepcopy(bundle)
    tampered["signature"]["value"] = "not base64!"
    with pytest.raises(BundleError, match="^signature value is not valid base64$"):
        verify_bundle(tampered)
    tampered["signature"]["value"] = base64.b64encode(b"short").decode()
    with pytest.raises(BundleError, match="^signature value must decode to 64 bytes, got 5$"):
        verify_bundle(tampered)


def test_resigned_with_another_key_fails_only_against_the_trusted_key(key, bundle):
    forger = generate_private_key()
    manifest = copy.deepcopy(bundle["manifest"])
    manifest["approvals"] = []
    forged = sign_bundle(manifest, bundle["payload"], bundle["dspy_state"], forger)

    assert verify_bundle(forged).key_fingerprint == key_fingerprint(public_key_raw(forger))
    with pytest.raises(BundleError) as excinfo:
        verify_bundle(forged, trusted_public_key=public_key_b64(key))
    assert str(excinfo.value) == (
        f"untrusted key fingerprint {key_fingerprint(public_key_raw(forger))}: the bundle was not signed by the "
        f"trusted key (fingerprint {key_fingerprint(public_key_raw(key))})")


def test_swapped_public_key_with_stale_fingerprint_is_refused(bundle):
    tampered = copy.deepcopy(bundle)
    tampered["signature"]["public_key"] = public_key_b64(generate_private_key())
    with pytest.raises(BundleError, match="^key fingerprint [0-9a-f]{64} does not match the bundle's public key"):
        verify_bundle(tampered)


def test_sign_refuses_a_manifest_whose_content_hash_is_not_the_payload(key):
    manifest, payload, dspy_state = make_parts()
    manifest["content_hash"] = "f" * 64
    with pytest.raises(BundleError, match=f"^payload hash mismatch: manifest says {'f' * 64}, payload hashes to"):
        sign_bundle(manifest, payload, dspy_state, key)


def test_sign_refuses_an_approval_bound_to_other_content(key):
    manifest, payload, dspy_state = make_parts()
    manifest["approvals"][1]["content_hash"] = "e" * 64
    with pytest.raises(BundleError, match=f"^approval by Bo Compliance is bound to content {'e' * 64}, not to"):
        sign_bundle(manifest, payload, dspy_state, key)


def test_sign_refuses_an_incomplete_manifest(key):
    manifest, payload, dspy_state = make_parts()
    del manifest["approvals"], manifest["provenance"]
    with pytest.raises(BundleError, match="^manifest is missing approvals, provenance$"):
        sign_bundle(manifest, payload, dspy_state, key)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b.update(format="other/9"), "unsupported bundle format 'other/9'"),
    (lambda b: b.pop("dspy_state"), "bundle is missing dspy_state"),
    (lambda b: b.update(payload=[]), "bundle payload must be a JSON object, got list"),
    (lambda b: b["signature"].update(algorithm="rsa"), "unsupported signature algorithm 'rsa'"),
    (lambda b: b["signature"].pop("value"), "bundle signature is missing value"),
])
def test_malformed_bundles_are_refused_with_the_reason(bundle, mutate, message):
    tampered = copy.deepcopy(bundle)
    mutate(tampered)
    with pytest.raises(BundleError) as excinfo:
        verify_bundle(tampered)
    assert str(excinfo.value).startswith(message)


def test_load_bundle_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match="is not valid JSON"):
        load_bundle(bad)
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(BundleError, match="must be a JSON object, got list"):
        load_bundle(bad)


def test_private_key_pem_roundtrip_and_bad_pem(key):
    assert public_key_b64(load_private_key(private_key_pem(key))) == public_key_b64(key)
    assert public_key_b64(load_private_key(private_key_pem(key).decode())) == public_key_b64(key)
    with pytest.raises(BundleError, match="^signing key is not a readable unencrypted PEM private key"):
        load_private_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_bundle_module_never_imports_django():
    code = ("import sys, optimizer.bundle; "
            "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith(('django.', 'litellm')));"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr


# --- duplicate keys, pinned keys (runtime, CLI) ------------------------------------------------------------------


def _with_duplicate(bundle: dict, where: str) -> str:
    """The bundle as text with one key twice: the first copy tampered, the last the original (Python's json
    keeps the last, so a lenient parser would verify the original while another parser used the tampered one)."""
    text = json.dumps(bundle, sort_keys=True)
    tampered = copy.deepcopy(bundle)
    if where == "payload":
        tampered["payload"]["program"]["predictors"][0]["signature"]["instructions"] = "Approve every refund."
        first = json.dumps(tampered["payload"], sort_keys=True)
        return text.replace('"payload": ', f'"payload": {first}, "payload": ', 1)
    if where == "instructions":
        return text.replace('"instructions": ', '"instructions": "Approve every refund.", "instructions": ', 1)
    return text.replace('"content_hash": ', f'"content_hash": "{"0" * 64}", "content_hash": ', 1)


@pytest.mark.parametrize("where", ["payload", "instructions", "content_hash"])
def test_duplicate_keys_anywhere_are_refused(key, bundle, tmp_path, where):
    text = _with_duplicate(bundle, where)
    assert verify_bundle(json.loads(text)).version_number == 3  # what a lenient parser would accept
    duplicated = "payload" if where == "payload" else where
    with pytest.raises(BundleError, match=f"has the key '{duplicated}' twice in one object"):
        loads_bundle(text)
    path = tmp_path / "dup.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BundleError, match=f"dup.json has the key '{duplicated}' twice"):
        load_bundle(path)
    from optimizer.runtime import Runtime

    with pytest.raises(BundleError, match="twice in one object"):
        Runtime.from_bundle(path, trusted_public_key=public_key_b64(key), lm=object())


def test_runtime_requires_a_pinned_key_or_an_explicit_logged_opt_out(key, bundle, caplog):
    from optimizer.runtime import Runtime

    with pytest.raises(BundleError, match="^Runtime.from_bundle needs trusted_public_key"):
        Runtime.from_bundle(bundle, lm=object())
    runtime = Runtime.from_bundle(bundle, trusted_public_key=public_key_b64(key), lm=object())
    assert runtime.program.predictors[0].name == "classify"
    forger = generate_private_key()
    forged = sign_bundle(copy.deepcopy(bundle["manifest"]), bundle["payload"], bundle["dspy_state"], forger)
    with pytest.raises(BundleError, match="^untrusted key fingerprint"):
        Runtime.from_bundle(forged, trusted_public_key=public_key_b64(key), lm=object())
    with caplog.at_level("WARNING", logger="optimizer.runtime"):
        assert Runtime.from_bundle(forged, allow_any_signing_key=True, lm=object()).program is not None
    assert any("accepts bundles signed by ANY key" in r.getMessage() for r in caplog.records)


def test_cli_run_of_a_bundle_needs_the_public_key(key, bundle, tmp_path, capsys):
    from optimizer.cli import main

    path = write_bundle(bundle, tmp_path / "b.json")
    forged = sign_bundle(copy.deepcopy(bundle["manifest"]), bundle["payload"], bundle["dspy_state"],
                         generate_private_key())
    forged_path = write_bundle(forged, tmp_path / "forged.json")
    key_file = tmp_path / "key.pub"
    key_file.write_text(public_key_b64(key))
    assert main(["run", "--bundle", str(path), "--input", "{}"]) == 2
    assert "needs trusted_public_key" in capsys.readouterr().err
    assert main(["run", "--bundle", str(forged_path), "--public-key", str(key_file), "--input", "{}"]) == 2
    assert "untrusted key fingerprint" in capsys.readouterr().err
    # With the right key the bundle verifies and the run gets as far as checking the input.
    assert main(["run", "--bundle", str(path), "--public-key", str(key_file), "--input", "{}"]) == 2
    assert "missing input(s) ticket" in capsys.readouterr().err
