"""Principals and ACLs of the local stack's SASL_SSL listener. Used only by scripts/stack and
the secured tests; operators grant the same table with their own tools (docs/DEPLOYMENT.md).

    secure.py users  BOOTSTRAP SECRETS_DIR USER...
        creates (or keeps) SCRAM-SHA-256 and SCRAM-SHA-512 credentials; each password is read from, or first
        written to, SECRETS_DIR/USER.password (mode 600)
    secure.py acls   BOOTSTRAP ACLS_FILE [--rename OLD=NEW ...] [--only PRINCIPAL ...]
        grants the table of ACLS_FILE (see scripts/kafka/acls.conf); --rename maps a topic,
        group or transactional id name of the table to another (the tests' private topics)

BOOTSTRAP is the PLAINTEXT listener, whose ANONYMOUS principal is a super user on loopback.
"""

import os
import secrets
import sys
import time

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

RESOURCES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional-id": ResourceType.TRANSACTIONAL_ID,
}


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def users(bootstrap: str, secrets_dir: str, names: list[str]) -> None:
    os.makedirs(secrets_dir, mode=0o700, exist_ok=True)
    passwords = {}
    for name in names:
        path = os.path.join(secrets_dir, f"{name}.password")
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
        with open(path) as f:
            passwords[name] = f.read().strip()
    client = admin(bootstrap)  # kept alive until every answer is in
    # One request per mechanism: a request may alter each user only once.
    for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
        info = ScramCredentialInfo(mechanism, 8192)
        alterations = [UserScramCredentialUpsertion(name, info, password.encode())
                       for name, password in passwords.items()]
        for future in client.alter_user_scram_credentials(alterations).values():
            future.result(timeout=30)


def read_table(path: str) -> list[tuple[str, str, str, list[str]]]:
    table = []
    for number, line in enumerate(open(path), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 4 or fields[1] not in RESOURCES:
            sys.exit(f"{path}:{number}: expected 'principal resource name operations'")
        principal, resource, name, operations = fields
        table.append((principal, resource, name, operations.split(",")))
    return table


def acls(bootstrap: str, path: str, renames: dict[str, str], only: set[str]) -> None:
    bindings = []
    for principal, resource, name, operations in read_table(path):
        if only and principal not in only:
            continue
        prefixed = name.endswith("*")
        name = name.rstrip("*")
        name = renames.get(name, name)
        for operation in operations:
            bindings.append(
                AclBinding(
                    RESOURCES[resource],
                    name,
                    ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL,
                    f"User:{principal}",
                    "*",
                    AclOperation[operation],
                    AclPermissionType.ALLOW,
                )
            )
    client = admin(bootstrap)  # kept alive until every answer is in
    for future in client.create_acls(bindings).values():
        future.result(timeout=30)
    # The controller has committed them; the broker applies its metadata a moment later.
    # Return only once the broker itself lists every grant, so that a client started next
    # is not refused.
    wanted = {key(b) for b in bindings}
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    deadline = time.monotonic() + 30
    while True:
        listed = {key(b) for b in client.describe_acls(everything).result(timeout=30)}
        if wanted <= listed:
            return
        if time.monotonic() > deadline:
            sys.exit(f"the broker does not list {len(wanted - listed)} of the ACLs after 30 s")
        time.sleep(0.1)


def key(b: AclBinding) -> tuple:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.operation)


def main(argv: list[str]) -> None:
    if len(argv) >= 4 and argv[1] == "users":
        users(argv[2], argv[3], argv[4:])
    elif len(argv) >= 4 and argv[1] == "acls":
        renames, only, rest = {}, set(), argv[4:]
        while rest:
            flag, value, rest = rest[0], rest[1] if len(rest) > 1 else "", rest[2:]
            if flag == "--rename" and "=" in value:
                old, new = value.split("=", 1)
                renames[old] = new
            elif flag == "--only" and value:
                only.add(value)
            else:
                sys.exit(__doc__)
        acls(argv[2], argv[3], renames, only)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
