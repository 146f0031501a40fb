"""Key format, hashing, and that only digests are stored."""

import hashlib

from sqlalchemy import select

from packet import keys, store
from packet.extensions import db
from packet.models import ApiKey


def test_generated_key_shape():
    key = keys.generate_key()
    assert key.startswith("pk_live_")
    assert len(key) == len("pk_live_") + 40
    assert keys.is_well_formed(key)
    assert keys.generate_key() != key


def test_digest_is_sha256_hex():
    assert keys.digest("pk_live_abc") == hashlib.sha256(b"pk_live_abc").hexdigest()


def test_malformed_keys():
    for bad in [
        "",
        "pk_live_",
        "pk_live_" + "a" * 31,
        "sk-" + "a" * 40,
        "pk_live_" + "a" * 31 + "!",
        "pk_test_" + "a" * 40,
    ]:
        assert not keys.is_well_formed(bad)


def test_display_prefix_is_short():
    key = keys.generate_key()
    assert keys.display_prefix(key) == key[:12]


def test_only_digest_and_prefix_stored(app):
    with app.app_context():
        store.create_account("acme", "free", 1_000_000)
        _, key = store.create_key("acme", "ci")
        stored = db.session.execute(select(ApiKey)).scalar_one()
        values = [str(getattr(stored, c.name)) for c in ApiKey.__table__.columns]
        assert key not in " ".join(values)
        assert stored.digest == keys.digest(key)
        assert stored.prefix == key[:12]


def test_revoke_by_prefix_and_key(app):
    with app.app_context():
        store.create_account("acme", "free", 1_000_000)
        _, key = store.create_key("acme")
        _, other = store.create_key("acme")
        store.revoke_key(key[:12] if key[:12] != other[:12] else key)
        assert store.find_active_key(keys.digest(key)) is None
        assert store.find_active_key(keys.digest(other)) is not None
