"""Users, tokens, roles, the audit log and approvals through a remote hub (``--hub URL``).

A real ``autovibe serve`` runs on its own data dir, with two global admins (alice, bob) provisioned by
the CLI on the hub host. Every command under test runs from an EMPTY home with only ``--hub`` and
``AUTOVIBE_TOKEN``; where it matters the output is compared with the same command run locally on the hub
host (the same lines but the target header, the same exit code and error line).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from tests.e2e.hub_server import RemoteSite, parallel, remote_site

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteSite]:
    with remote_site(tmp_path_factory.mktemp("remote-admin"), admins=("alice", "bob")) as site:
        yield site


def _body(output: str) -> str:
    """Human output without its first line (the target header, which names the hub or the cluster)."""
    first, _, rest = output.partition("\n")
    assert first.startswith("target: "), output
    return rest


def test_identity_administration_through_the_hub(hub: RemoteSite) -> None:
    added = hub.ok("user", "add", "carol", "--display-name", "Carol C")
    assert added.splitlines() == [
        f"target: hub {hub.url}",
        "added user 'carol' (no roles yet: autovibe role bind carol ROLE)",
    ]
    bound, created = parallel(
        (hub.ok, "role", "bind", "carol", "operator"),
        (hub.run, "token", "create", "carol", "--description", "ci", "--ttl", "1d"),
    )
    assert bound.splitlines()[1:] == ["user 'carol' is operator globally"]
    # The secret is printed once on stdout, with the warning on stderr, exactly as locally.
    assert created.returncode == 0, created.stderr
    header, made, secret = created.stdout.splitlines()
    token_id = re.fullmatch(r"created token ([0-9a-f]{12}) for user 'carol' \(expires .* UTC\)", made)
    assert token_id is not None and header == f"target: hub {hub.url}", created.stdout
    assert re.fullmatch(rf"avt_{token_id.group(1)}_[A-Za-z0-9_-]{{43}}", secret)
    assert "this is the only time the token is shown" in created.stderr

    works, refused, users, users_here, roles, tokens, entries, verified, bad_role, bad_token = parallel(
        (hub.user(secret).run, "machine", "list"),
        (hub.user(secret).run, "user", "add", "mallory"),
        (hub.ok, "user", "list"),
        (hub.local, "user", "list"),
        (hub.json, "role", "list"),
        (hub.json, "token", "list", "--user", "carol"),
        (hub.json, "audit", "list", "--action", "user.add", "--since", "1h"),
        (hub.run, "audit", "verify"),
        (hub.run, "role", "bind", "carol", "superuser"),
        (hub.run, "token", "revoke", "not-a-token"),
    )
    assert works.returncode == 0, works.stderr  # the new token acts remotely
    assert refused.returncode == 3 and "may not user.add" in refused.stderr, refused.stderr  # an operator
    # The same table as on the hub host: the rows are the hub's, not a local store's.
    assert users_here.returncode == 0 and _body(users) == _body(users_here.stdout)
    assert re.search(r"^carol\s+Carol C\s+enabled\s", users, re.M), users
    assert {"user": "carol", "role": "operator", "project": None} in roles["bindings"]
    assert {"user": "bob", "role": "admin", "project": None} in roles["bindings"]
    assert [(t["token_id"], t["description"], t["state"]) for t in tokens["tokens"]] == [
        (token_id.group(1), "ci", "active")
    ]
    assert tokens["tokens"][0]["expires_at"] is not None and secret not in json.dumps(tokens)
    adds = [(e["actor"], e["target"], e["outcome"]) for e in entries["entries"]]
    assert ("alice", "user carol", "succeeded") in adds, adds
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert re.search(r"^audit log intact: \d+ entries, hash chain verified$", verified.stdout, re.M)
    head = re.search(r"^head (\d+):([0-9a-f]{64}) ", verified.stdout, re.M)
    assert head is not None, verified.stdout
    # Names the hub's routes could not take: the local code's exit code and line, not a 400.
    assert bad_role.returncode == 2, bad_role.stderr
    assert "unknown role 'superuser'; the roles are viewer, operator, admin, auditor" in bad_role.stderr
    assert bad_token.returncode == 4 and "no token 'not-a-token'" in bad_token.stderr, bad_token.stderr

    revoked = hub.ok("token", "revoke", token_id.group(1))
    assert revoked.splitlines()[1:] == [f"revoked token {token_id.group(1)} of user 'carol'"]
    gone, unbound, exported, shown, anchored = parallel(
        (hub.user(secret).run, "machine", "list"),
        (hub.ok, "role", "unbind", "carol", "operator"),
        (hub.run, "audit", "export"),
        (hub.json, "audit", "show", head.group(1)),
        (hub.json, "audit", "verify", "--anchor", f"{head.group(1)}:{head.group(2)}"),
    )
    assert gone.returncode == 3 and "authentication failed" in gone.stderr, gone.stderr
    assert secret not in gone.stdout + gone.stderr
    assert unbound.splitlines()[1:] == ["user 'carol' is no longer operator globally"]
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [e["id"] for e in lines] == list(range(1, len(lines) + 1)) and len(lines) > int(head.group(1))
    assert secret.split("_", 2)[2] not in exported.stdout  # secrets are never audited
    assert shown["entry"]["hash"] == head.group(2) and shown["target"] == f"hub {hub.url}"
    assert anchored["ok"] is True and anchored["checked"] >= int(head.group(1))


def test_a_held_delete_is_approved_by_another_admin_remotely(hub: RemoteSite) -> None:
    hub.ok(
        "machine", "create", "--profile", "claude_code", "--project", "alpha", "--name", "vault",
        "--label", "critical=true",
    )  # fmt: skip

    def held() -> str:
        done = hub.run("machine", "delete", "vault", "--yes")
        assert done.returncode == 3, done.stdout + done.stderr
        match = re.search(r"request ([0-9a-f]{8}) is waiting", done.stderr)
        assert match is not None and "autovibe approve" in done.stderr, done.stderr
        return match.group(1)

    first = held()
    pending, own = parallel((hub.user("bob").json, "approval", "list"), (hub.run, "approve", first))
    assert [(p["id"][:8], p["action"], p["target"], p["requested_by"]) for p in pending["pending"]] == [
        (first, "machine.delete", "machine vault", "alice")
    ]
    assert "1 machine(s) labelled critical" in pending["pending"][0]["reasons"]
    # The two-person rule: the requester cannot approve its own request.
    assert own.returncode == 3 and "cannot approve it too" in own.stderr, own.stderr

    rejected = hub.user("bob").ok("approval", "reject", first)
    assert rejected.splitlines() == [
        f"rejected {first}: machine.delete on machine vault (requested by alice)"
    ]
    second, refused = parallel((held,), (hub.run, "machine", "delete", "vault", "--yes", "--approval", first))
    assert second != first
    assert refused.returncode == 1 and f"approval {first} is rejected" in refused.stderr, refused.stderr

    approved = hub.user("bob").ok("approve", second)
    assert approved.splitlines() == [
        f"approved {second}: machine.delete on machine vault (requested by alice)",
        f"the requester now retries the same command with --approval {second}",
    ]
    deleted = hub.json("machine", "delete", "vault", "--yes", "--approval", second)
    assert deleted["deleted"]["name"] == "vault" and deleted["deleted"]["operation_id"]
