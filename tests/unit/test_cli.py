"""The admin CLI, through Flask's CLI runner against a migrated SQLite database."""

import socket

from packet import keys, store


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def test_account_lifecycle(runner, app):
    result = invoke(runner, "accounts", "create", "acme", "--tier", "standard", "--balance", "25")
    assert result.exit_code == 0, result.output
    assert "balance $25.00" in result.output
    assert invoke(runner, "accounts", "create", "acme").exit_code != 0
    assert (
        invoke(runner, "accounts", "credit", "acme", "0.50").output.strip()
        == "acme: balance $25.50"
    )
    assert (
        invoke(runner, "accounts", "credit", "acme", "--", "-5").output.strip()
        == "acme: balance $20.50"
    )
    assert invoke(runner, "accounts", "set-tier", "acme", "premium").exit_code == 0
    listing = invoke(runner, "accounts", "list").output
    assert "acme\ttier=premium\tbalance=$20.50" in listing
    with app.app_context():
        assert store.get_account("acme").balance_micros == 20_500_000


def test_unknown_tier_and_bad_amount_rejected(runner):
    assert "unknown tier" in invoke(runner, "accounts", "create", "x", "--tier", "gold").output
    assert invoke(runner, "accounts", "create", "x", "--balance", "lots").exit_code != 0
    assert "no account" in invoke(runner, "accounts", "credit", "ghost", "1").output


def test_keys_create_prints_key_alone_on_last_stdout_line(runner, app):
    invoke(runner, "accounts", "create", "acme")
    result = runner.invoke(args=["keys", "create", "acme", "--label", "ci"])
    key = result.stdout.strip().splitlines()[-1]
    assert keys.is_well_formed(key)
    listing = invoke(runner, "keys", "list", "acme").output
    assert key[:12] in listing and key not in listing and "label=ci" in listing
    with app.app_context():
        assert store.find_active_key(keys.digest(key)) is not None
    assert invoke(runner, "keys", "revoke", key[:12]).exit_code == 0
    with app.app_context():
        assert store.find_active_key(keys.digest(key)) is None
    assert "revoked=" in invoke(runner, "keys", "list", "acme").output
    assert invoke(runner, "keys", "revoke", key).exit_code != 0


def test_keys_carry_their_controls_from_create_to_update_and_list(runner, app):
    invoke(runner, "accounts", "create", "acme", "--tier", "standard")
    result = runner.invoke(
        args=[
            "keys",
            "create",
            "acme",
            "--label",
            "svc",
            "--rpm",
            "5",
            "--tpm",
            "1000",
            "--budget",
            "0.01",
            "--models",
            "m1,m2",
            "--expires",
            "2027-01-31",
        ]
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    line = invoke(runner, "keys", "list", "acme").output
    assert "rpm=5\ttpm=1000\tbudget=$0.01/month\tspent=$0.00\tmodels=m1,m2" in line
    assert "expires=2027-02-01T00:00:00+00:00" in line
    changed = invoke(
        runner, "keys", "update", key[:12], "--rpm", "none", "--budget-period", "total"
    )
    assert changed.exit_code == 0, changed.output
    assert "rpm=-" in changed.output and "budget=$0.01/total" in changed.output
    with app.app_context():
        row = store.find_live_key(key)
        assert (row.rpm, row.tpm, row.budget_micros, row.models) == (None, 1000, 10_000, "m1\nm2")


def test_keys_controls_refused_when_looser_than_the_tier_or_malformed(runner):
    invoke(runner, "accounts", "create", "acme", "--tier", "standard")
    above = invoke(runner, "keys", "create", "acme", "--rpm", "61")
    assert above.exit_code != 0 and "above the account's tier (60)" in above.output
    for option, value in [
        ("--rpm", "0"),
        ("--rpm", "x"),
        ("--budget", "-1"),
        ("--budget", "lots"),
        ("--expires", "soon"),
        ("--budget-period", "week"),
    ]:
        assert invoke(runner, "keys", "create", "acme", option, value).exit_code != 0, option
    assert "Give at least one option" in invoke(runner, "keys", "update", "pk_live_x").output


def test_endpoints_validated(runner):
    invoke(runner, "accounts", "create", "acme")
    ok = invoke(
        runner, "endpoints", "add", "acme", "http://10.0.0.5:8000/v1/", "--upstream-key", "s3cret"
    )
    assert ok.exit_code == 0 and "http://10.0.0.5:8000" in ok.output
    for bad in ["ftp://h:8000", "http://user:pw@h:8000", "not a url", "http://h:99999"]:
        assert invoke(runner, "endpoints", "add", "acme", bad).exit_code != 0, bad
    listing = invoke(runner, "endpoints", "list", "acme").output
    assert "upstream_key=set" in listing and "s3cret" not in listing
    endpoint_id = listing.split("\t")[0]
    assert invoke(runner, "endpoints", "remove", "acme", endpoint_id).exit_code == 0
    assert invoke(runner, "endpoints", "list", "acme").output == ""


def test_demo_creates_account_once_and_prints_a_key(runner, app):
    first = runner.invoke(args=["demo"]).stdout.strip()
    second = runner.invoke(args=["demo"]).stdout.strip()
    assert keys.is_well_formed(first) and keys.is_well_formed(second) and first != second
    with app.app_context():
        assert len(store.list_accounts()) == 1


def test_usage_report_empty(runner):
    invoke(runner, "accounts", "create", "acme")
    assert "0 requests" in invoke(runner, "usage", "acme").output
    assert '"requests": 0' in invoke(runner, "usage", "acme", "--json").output


def test_endpoints_add_refuses_what_the_policy_denies(runner, app, monkeypatch):
    invoke(runner, "accounts", "create", "acme")
    names = {"meta.example": ["169.254.169.254"], "pod.example": ["10.0.0.7"]}
    policy = app.extensions["packet"].client.policy
    monkeypatch.setattr(policy, "resolver", lambda host, port: names[host])
    for url, rule in [
        ("http://169.254.169.254", "link-local"),
        ("http://[::ffff:169.254.169.254]:80", "link-local"),
        ("http://metadata.google.internal", "metadata service name"),
        ("http://meta.example:8000", "169.254.169.254"),
    ]:
        result = invoke(runner, "endpoints", "add", "acme", url)
        assert result.exit_code == 1, url
        assert "refused by the gateway's policy" in result.output and rule in result.output
    result = invoke(runner, "endpoints", "add", "acme", "http://0x7f000001:8000")
    assert result.exit_code != 0 and "not a canonical address" in result.output
    assert invoke(runner, "endpoints", "list", "acme").output == ""
    assert invoke(runner, "endpoints", "add", "acme", "http://pod.example:8000").exit_code == 0


def test_endpoints_add_accepts_a_name_that_does_not_resolve_yet(runner, app, monkeypatch):
    def unresolvable(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    invoke(runner, "accounts", "create", "acme")
    monkeypatch.setattr(app.extensions["packet"].client.policy, "resolver", unresolvable)
    result = invoke(runner, "endpoints", "add", "acme", "http://pod-7.example:8000")
    assert result.exit_code == 0
    assert "does not resolve now" in result.output


def test_endpoints_add_under_a_loopback_deny(make_app):
    runner = make_app(PACKET_ENDPOINT_DENY="127.0.0.0/8,::1").test_cli_runner()
    invoke(runner, "accounts", "create", "acme")
    for url in ("http://127.0.0.1:8000", "http://[::1]:8000", "http://[::ffff:127.0.0.1]:8000"):
        result = invoke(runner, "endpoints", "add", "acme", url)
        assert result.exit_code == 1 and "PACKET_ENDPOINT_DENY" in result.output, url
    assert invoke(runner, "endpoints", "add", "acme", "http://10.0.0.5:8000").exit_code == 0
