"""`copilot users add | list | token | passwd | disable | enable`: people and service accounts."""

from __future__ import annotations

import sys

from copilot.users.store import ROLES, UserError, UserStore, open_user_store


def _store(args) -> UserStore:
    return open_user_store(args.settings)


def cmd_add(args) -> int:
    token = _store(args).add(args.name, args.role, department=args.department)
    where = f", {args.department}" if args.department else ""
    print(f"created {args.name} ({args.role}{where}). API token, shown once (store it now):\n{token}")
    return 0


def cmd_list(args) -> int:
    for user in _store(args).list():
        print(f"{user.name}\t{user.role}\t{'disabled' if user.disabled else 'active'}\t{user.created}"
              f"\t{user.department or '-'}")
    return 0


def cmd_department(args) -> int:
    _store(args).set_department(args.name, args.department)
    print(f"{args.name}: department {args.department or '(none)'}")
    return 0


def cmd_token(args) -> int:
    print(_store(args).rotate_token(args.name))
    print(f"the old token of {args.name} no longer works", file=sys.stderr)
    return 0


def cmd_passwd(args) -> int:
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"new sidebar password for {args.name}: ")
        if password != getpass.getpass("again: "):
            raise UserError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    _store(args).set_password(args.name, password)
    print(f"password set for {args.name}")
    return 0


def cmd_disable(args) -> int:
    _store(args).set_disabled(args.name, args.action == "disable")
    print(f"{args.name} {args.action}d")
    return 0


def register(commands) -> None:
    users = commands.add_parser("users", help="people and service accounts: roles, API tokens, sidebar passwords",
                                description="Users of the sidebar and API, stored under COPILOT_HOME/users.db. "
                                            "Roles: clinician (drafting, QC of one record, CDS Hooks), doctor (the "
                                            "QC office findings of their own records), dept_qc (their department's "
                                            "findings; needs --department), qc_staff (QC, batch jobs, the whole "
                                            "hospital's findings), admin (everything, including the audit log). "
                                            "Tokens are shown once and stored hashed.")
    actions = users.add_subparsers(dest="action", metavar="ACTION")
    add = actions.add_parser("add", help="create a user and print their API token once")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--department", help="the department (科室) of a doctor or dept_qc user, as records name it")
    add.set_defaults(func=cmd_add)
    department = actions.add_parser("department", help="set (or, without DEPARTMENT, clear) a user's department")
    department.add_argument("name")
    department.add_argument("department", nargs="?")
    department.set_defaults(func=cmd_department)
    actions.add_parser("list", help="list users and roles").set_defaults(func=cmd_list)
    for action, text, handler in (
            ("token", "issue a new API token (the old one stops working)", cmd_token),
            ("passwd", "set the sidebar password (read from the terminal, or one line of stdin)", cmd_passwd),
            ("disable", "block a user (tokens and sessions stop working)", cmd_disable),
            ("enable", "unblock a user", cmd_disable)):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("name")
        parser.set_defaults(func=handler)
    users.set_defaults(user_errors=(UserError,))
