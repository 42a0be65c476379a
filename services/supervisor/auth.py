"""Who may connect to the stack's NATS servers, and to which subjects (`esdb up --auth`).

Every user has a password (only its bcrypt hash is kept, in `<data-dir>/auth/users.json`) and
a role:

- `service`: esdb's own processes; everything, including `esdb.internal.>` and JetStream.
- `admin`: the public API of every store and `_sys` management, every store's event topics
  and subscription subjects, and the leader's announcements (`esdb.cluster.serving`).
- `tenant`: the public API (`esdb.api.<store>.>`, and `esdb.write.<store>.>` and
  `esdb.read.<store>.>` where the servers route its writes and reads), its straight writes
  (`esdb.leader.<store>.>`), event topics (`esdb.events.<store>.>`) and subscription subjects
  (`esdb.subs.<store>.>`) of its own stores only, and the leader's announcements
  (`esdb.cluster.serving`, subscribe only).

Replies come back on a per-user inbox prefix (`_INBOX_<user>.>`), so no user can read another
user's replies; the Python client sets it from the user name in the URL. Deliveries of
persistent subscriptions may be answered on their reply subject (a receipt), nothing else.
The nats-server configs `include` the generated `nats-auth.conf`; `esdb user add` rewrites
it and reloads the servers (SIGHUP).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

import bcrypt

from esdb.contracts.subjects import (
    API_PREFIX,
    LEADER_PREFIX,
    READ_PREFIX,
    WRITE_PREFIX,
    WRITER_SERVING,
)
from esdb.contracts.subscriptions import SUBS_PREFIX
from esdb.contracts.topics import EVENTS_PREFIX
from esdb.shared.files import write_atomically

SERVICE_USER = "esdb-service"
ADMIN_USER = "admin"
ROLES = ("service", "admin", "tenant")
USER_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
AUTH_DIR = "auth"
CONFIG_NAME = "nats-auth.conf"


class AuthError(ValueError):
    """A user cannot be added as asked; the message says why."""


@dataclass
class User:
    """One NATS user of the stack."""

    user: str
    password_hash: str
    role: str
    stores: list[str] = field(default_factory=list)


def inbox_prefix(user: str) -> str:
    """The reply inbox prefix a user's connections must use."""
    return f"_INBOX_{user}"


class AuthRegistry:
    """The users of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / AUTH_DIR
        self._path = self.dir / "users.json"

    @property
    def config_path(self) -> Path:
        """The nats-server config fragment with every user and their permissions."""
        return self.dir / CONFIG_NAME

    def users(self) -> list[User]:
        """Every user, in the order added."""
        if not self._path.exists():
            return []
        return [User(**raw) for raw in json.loads(self._path.read_text())["users"]]

    def add(self, name: str, role: str, stores: list[str]) -> str:
        """Add a user and return its password (shown once; only its hash is kept)."""
        if not USER_NAME.match(name):
            raise AuthError(f"user names are 1-64 letters, digits, '_' or '-', not {name!r}")
        if role not in ROLES:
            raise AuthError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if role == "tenant" and not stores:
            raise AuthError("a tenant needs at least one --store")
        users = self.users()
        if any(u.user == name for u in users):
            raise AuthError(f"user {name!r} exists already")
        password = secrets.token_urlsafe(24)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
        users.append(User(name, hashed, role, list(stores)))
        self._save(users)
        return password

    def ensure_builtin(self) -> dict[str, str]:
        """Create the service and admin users if missing; the URL credentials (`user:pw`) of
        each, kept in `<auth>/<user>.creds` (mode 0600) for the stack and its operator."""
        found = {u.user for u in self.users()}
        for name, role in ((SERVICE_USER, "service"), (ADMIN_USER, "admin")):
            if name not in found:
                password = self.add(name, role, [])
                creds = self.dir / f"{name}.creds"
                creds.write_text(f"{name}:{password}\n")
                creds.chmod(0o600)
        return {
            name: (self.dir / f"{name}.creds").read_text().strip()
            for name in (SERVICE_USER, ADMIN_USER)
        }

    def _save(self, users: list[User]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        write_atomically(self._path, json.dumps({"users": [asdict(u) for u in users]}, indent=2))
        self.config_path.write_text(authorization_config(users))


def authorization_config(users: list[User]) -> str:
    """The `authorization` block of the nats-server config."""
    entries = [_user_entry(user) for user in users]
    return "authorization {\n  users: [\n" + "".join(entries) + "  ]\n}\n"


def _user_entry(user: User) -> str:
    if user.role == "service":
        publish, subscribe = [">"], [">"]
    elif user.role == "admin":
        publish = [
            f"{prefix}.>" for prefix in (API_PREFIX, WRITE_PREFIX, LEADER_PREFIX, READ_PREFIX)
        ]
        subscribe = [
            f"{EVENTS_PREFIX}.>",
            f"{SUBS_PREFIX}.>",
            WRITER_SERVING,
            f"{inbox_prefix(user.user)}.>",
        ]
    else:
        # The servers map a store's public writes to `esdb.write.<store>.<op>` and its reads
        # to `esdb.read.<store>.<op>` before they check permissions, so those subjects are
        # granted with the store's API, and so is its own straight write subject.
        publish = [
            f"{prefix}.{store}.>"
            for store in user.stores
            for prefix in (API_PREFIX, WRITE_PREFIX, LEADER_PREFIX, READ_PREFIX)
        ]
        subscribe = [
            *(f"{EVENTS_PREFIX}.{store}.>" for store in user.stores),
            *(f"{SUBS_PREFIX}.{store}.>" for store in user.stores),
            WRITER_SERVING,
            f"{inbox_prefix(user.user)}.>",
        ]
    responses = "" if user.role == "service" else ', allow_responses: {max: 1, expires: "1m"}'
    return (
        f'    {{user: "{user.user}", password: "{user.password_hash}", permissions: {{'
        f"publish: {{allow: {json.dumps(publish)}}}, "
        f"subscribe: {{allow: {json.dumps(subscribe)}}}{responses}}}}}\n"
    )


def with_credentials(url: str, credentials: str) -> str:
    """Every server of a comma-separated NATS URL with `user:password@` added."""
    out = []
    for server in url.split(","):
        scheme, _, rest = server.partition("://")
        out.append(f"{scheme}://{credentials}@{rest}")
    return ",".join(out)


def reload_servers(run_dir: Path) -> int:
    """SIGHUP every nats-server of the stack whose pid file is in `run_dir`; how many."""
    reloaded = 0
    for pid_file in sorted(run_dir.glob("nats-server-*.pid")):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGHUP)
            reloaded += 1
        except (ProcessLookupError, ValueError):
            continue
    return reloaded
