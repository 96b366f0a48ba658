"""``katcp-admin``: certificates and users for secure KATCP servers.

Usage::

    katcp-admin certgen CERT KEY [--hostname NAME]... [--days N] [--org O]
                        [--sign-with CA_CERT CA_KEY] [--force]
    katcp-admin certdump CERT
    katcp-admin user add DB USER --role {read,control,admin} [--subject SUBJECT]
                         [--password-stdin]
    katcp-admin user remove DB USER
    katcp-admin user list DB
    katcp-admin user passwd DB USER [--password-stdin]
    katcp-admin user set DB USER [--role ROLE] [--subject SUBJECT | --no-subject]

``certgen`` writes a new private key (0600) and a certificate for it: self-signed (a
trust anchor of its own) or, with ``--sign-with``, signed by a CA made earlier with
``certgen``. ``certdump`` shows a certificate, including its subject in the form a user's
``--subject`` takes. ``user ...`` edits a user store (a SQLite file, created 0600 on first
use); passwords are asked for twice on the terminal, or read from the first line of
standard input with ``--password-stdin``, and only their scrypt hashes are stored.

Exit status: 0 on success, 1 when the operation fails (message on stderr), 2 for usage
errors. ``certgen`` and ``certdump`` need the ``cryptography`` library
(``pip install 'katcp[security]'``).
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from typing import List, Sequence, TextIO

from .._security.roles import ROLES
from .._security.userstore import UserStore, UserStoreError

PROG = "katcp-admin"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class AdminError(Exception):
    """An operation failed; the message is for the user (stderr), exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser of ``katcp-admin``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Certificates and users for secure KATCP servers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    gen = sub.add_parser("certgen", help="make a private key and a certificate for it",
                         description="Write a new ECDSA P-256 private key (mode 0600) and a "
                                     "certificate for it, self-signed unless --sign-with.")
    gen.add_argument("cert", metavar="CERT", help="certificate file to write (PEM)")
    gen.add_argument("key", metavar="KEY", help="private key file to write (PEM, 0600)")
    gen.add_argument("--hostname", action="append", metavar="NAME",
                     help="host name or IP address the certificate is for; repeat for more; "
                          "the first is the common name (default: this host's name, "
                          "localhost, 127.0.0.1 and ::1). For a client certificate, "
                          "give the user's name.")
    gen.add_argument("--days", type=_positive_int, default=365, metavar="N",
                     help="days of validity (default 365)")
    gen.add_argument("--org", metavar="O", help="organisation name in the subject")
    gen.add_argument("--sign-with", nargs=2, metavar=("CA_CERT", "CA_KEY"),
                     help="sign with this CA certificate and key instead of self-signing")
    gen.add_argument("--force", action="store_true", help="overwrite existing files")

    dump = sub.add_parser("certdump", help="show a certificate",
                          description="Show a PEM certificate: subject, issuer, validity, "
                                      "host names, key and SHA-256 fingerprint.")
    dump.add_argument("cert", metavar="CERT", help="certificate file (PEM)")

    user = sub.add_parser("user", help="edit a user store",
                          description="Add, remove, list and change users of a user store.")
    usub = user.add_subparsers(dest="user_command", metavar="ACTION")
    usub.required = True

    add = usub.add_parser("add", help="add a user")
    add.add_argument("db", metavar="DB", help="user store file (created if missing)")
    add.add_argument("user", metavar="USER", help="user name")
    add.add_argument("--role", required=True, choices=ROLES, help="the user's role")
    add.add_argument("--subject", metavar="SUBJECT",
                     help="TLS client-certificate subject that logs this user in "
                          "(as certdump prints it, e.g. CN=alice,O=Lab)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")

    rm = usub.add_parser("remove", help="remove a user")
    rm.add_argument("db", metavar="DB", help="user store file")
    rm.add_argument("user", metavar="USER", help="user name")

    ls = usub.add_parser("list", help="list the users")
    ls.add_argument("db", metavar="DB", help="user store file")

    pw = usub.add_parser("passwd", help="change a user's password")
    pw.add_argument("db", metavar="DB", help="user store file")
    pw.add_argument("user", metavar="USER", help="user name")
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of standard input")

    st = usub.add_parser("set", help="change a user's role or certificate subject")
    st.add_argument("db", metavar="DB", help="user store file")
    st.add_argument("user", metavar="USER", help="user name")
    st.add_argument("--role", choices=ROLES, help="new role")
    group = st.add_mutually_exclusive_group()
    group.add_argument("--subject", metavar="SUBJECT", help="new certificate subject")
    group.add_argument("--no-subject", action="store_true",
                       help="remove the certificate subject")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def read_new_password(from_stdin: bool, stdin: TextIO) -> str:
    """The new password: first line of ``stdin``, or asked twice on the terminal.

    Raises
    ------
    AdminError
        Empty, or the two entries differ.
    """
    if from_stdin:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
    else:
        try:
            password = getpass.getpass("New password: ")
            again = getpass.getpass("Repeat password: ")
        except EOFError:
            raise AdminError("no password given") from None
        if password != again:
            raise AdminError("the passwords do not match")
    if not password:
        raise AdminError("the password must not be empty")
    return password


def _default_hostnames() -> List[str]:
    names = [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    return list(dict.fromkeys(n for n in names if n))


def cmd_certgen(args: argparse.Namespace, out: TextIO) -> None:
    """``certgen``: write a key and a certificate."""
    certs = _certs_module()
    hostnames = args.hostname or _default_hostnames()
    issuer = None
    if args.sign_with:
        ca_cert_path, ca_key_path = args.sign_with
        try:
            issuer = (certs.load_certificate(ca_cert_path), certs.load_key(ca_key_path))
        except (OSError, ValueError, TypeError) as exc:
            raise AdminError(f"cannot load the CA certificate and key: {exc}") from None
    key = certs.generate_key()
    cert = certs.make_certificate(key, hostnames[0], hostnames=hostnames, days=args.days,
                                  organization=args.org, issuer=issuer)
    try:
        certs.write_key(args.key, key, overwrite=args.force)
    except FileExistsError:
        raise AdminError(f"{args.key} exists (use --force to overwrite)") from None
    except OSError as exc:
        raise AdminError(f"cannot write {args.key}: {exc.strerror or exc}") from None
    try:
        certs.write_certificate(args.cert, cert, overwrite=args.force)
    except FileExistsError:
        raise AdminError(f"{args.cert} exists (use --force to overwrite)") from None
    except OSError as exc:
        raise AdminError(f"cannot write {args.cert}: {exc.strerror or exc}") from None
    how = "signed by " + cert.issuer.rfc4514_string() if issuer else "self-signed"
    out.write(f"Wrote {args.cert} ({certs.subject_of(cert)}, {how}, {args.days} days) "
              f"and its private key {args.key} (keep it secret)\n")


def cmd_certdump(args: argparse.Namespace, out: TextIO) -> None:
    """``certdump``: describe a certificate."""
    certs = _certs_module()
    try:
        cert = certs.load_certificate(args.cert)
    except OSError as exc:
        raise AdminError(f"cannot read {args.cert}: {exc.strerror or exc}") from None
    except ValueError:
        raise AdminError(f"{args.cert} does not hold a PEM certificate") from None
    out.write(certs.describe_certificate(cert) + "\n")


def _certs_module():
    # cryptography is an optional dependency, needed by these two commands only.
    try:
        from .._security import certs
    except ImportError:
        raise AdminError("this command needs the cryptography library: "
                         "pip install 'katcp[security]'") from None
    return certs


def cmd_user(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    """``user ...``: edit a user store."""
    store = UserStore(args.db)
    action = args.user_command
    if action == "add":
        password = read_new_password(args.password_stdin, stdin)
        user = store.add_user(args.user, password, args.role, subject=args.subject)
        out.write(f"Added user {user.name} ({user.role}) to {args.db}\n")
    elif action == "remove":
        store.remove_user(args.user)
        out.write(f"Removed user {args.user} from {args.db}\n")
    elif action == "list":
        users = store.list_users()
        width = max([4] + [len(u.name) for u in users])
        out.write(f"{'USER':<{width}}  {'ROLE':<7}  CERTIFICATE SUBJECT\n")
        for u in users:
            out.write(f"{u.name:<{width}}  {u.role:<7}  {u.subject or '-'}\n")
    elif action == "passwd":
        if store.get_user(args.user) is None:
            raise AdminError(f"no user {args.user!r} in {args.db}")
        store.set_password(args.user, read_new_password(args.password_stdin, stdin))
        out.write(f"Changed the password of {args.user}\n")
    elif action == "set":
        if args.role is None and args.subject is None and not args.no_subject:
            raise AdminError("nothing to change: give --role, --subject or --no-subject")
        if store.get_user(args.user) is None:
            raise AdminError(f"no user {args.user!r} in {args.db}")
        if args.role is not None:
            store.set_role(args.user, args.role)
        if args.subject is not None or args.no_subject:
            store.set_subject(args.user, None if args.no_subject else args.subject)
        updated = store.get_user(args.user)
        if updated is None:
            raise AdminError(f"user {args.user!r} was removed meanwhile")
        out.write(f"User {updated.name}: role {updated.role}, "
                  f"subject {updated.subject or '-'}\n")


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``katcp-admin``; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).
    stdin, stdout, stderr : file, optional
        Streams (default the process's).

    Returns
    -------
    status : int
        0 on success, 1 on failure, 2 for usage errors.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        if args.command == "certgen":
            cmd_certgen(args, stdout)
        elif args.command == "certdump":
            cmd_certdump(args, stdout)
        else:
            cmd_user(args, stdout, stdin)
    except (AdminError, UserStoreError) as exc:
        stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_FAILURE
    except OSError as exc:
        stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        stderr.write(f"{PROG}: interrupted\n")
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
