"""Settings read from the environment, with embedded defaults under ./var/."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tomllib
from dataclasses import dataclass
from datetime import time as dt_time
from pathlib import Path
from typing import Mapping

SERVICES = ("intake", "matching", "notify", "metrics")
# What the web processes' access logs keep of a request: its path without the query string, which can hold a phone
# number or a name (`/sms/messages?to=...`).
ACCESS_LOG = ["--access-logfile", "-", "--access-logformat", '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss']


@dataclass(frozen=True)
class Settings:
    """Everything a service process needs to know about where it runs."""

    service: str
    var_dir: Path
    database_url: str
    broker_url: str
    secret_key: str
    public_url: str
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    twilio_from_number: str | None
    twilio_base_url: str | None
    twilio_messaging_service_sid: str | None
    default_region: str
    max_attempts: int
    poll_interval: float
    token_lifetime_days: int = 30  # how long an API token lets its holder in (`CCS_TOKEN_LIFETIME_DAYS`)
    # seconds a failed message waits before its next try, by try (the last repeats): `CCS_RETRY_DELAYS`
    retry_delays: tuple[float, ...] = (1, 5, 30, 120, 600)

    @property
    def broker_is_filesystem(self) -> bool:
        """True when the bus is kombu's filesystem transport under var/."""
        return self.broker_url.startswith("filesystem://")

    @property
    def webhook_token(self) -> str:
        """What inbound SMS webhooks are signed with: Twilio's auth token, or (with no Twilio) a development token
        derived from the secret key, which the simulator and `ccs text` sign with."""
        return self.twilio_auth_token or development_webhook_token(self.secret_key)

    @property
    def uses_twilio(self) -> bool:
        """True when SMS go through Twilio (its credentials are set); else the development gateway carries them."""
        return bool(self.twilio_account_sid and self.twilio_auth_token)


def development_webhook_token(secret_key: str) -> str:
    """The token development SMS webhooks are signed with when there is no Twilio: derived from the secret key."""
    return hmac.new(secret_key.encode(), b"development sms webhook", hashlib.sha256).hexdigest()




def database_url(service: str, var: Path | None = None) -> str:
    """The service's own database: `<SERVICE>_DATABASE_URL`, else a SQLite file under var/."""
    url = os.environ.get(f"{service.upper()}_DATABASE_URL")
    if url:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    return f"sqlite:///{(var or var_dir()) / f'{service}.sqlite3'}"


def secret_key(var: Path) -> str:
    """`CCS_SECRET_KEY`, or a key made once and kept in var/ for the embedded default."""
    key = os.environ.get("CCS_SECRET_KEY")
    if key:
        return key
    path = var / "secret.key"
    if not path.exists():
        # Several processes may start at once: each writes its own file, and only the first link wins.
        tmp = var / f".secret.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


class SettingsError(ValueError):
    """A setting in the environment that cannot be used; the message names the variable."""


PROJECT_NAME = "compassionate-communities"  # the name in pyproject.toml: how a folder is known as the project's


class ProjectNotFound(SettingsError):
    """No CCS_VAR_DIR, and no project folder (so no var/) where `ccs` looked; the message says where that was."""


def is_project(folder: Path) -> bool:
    """True when `folder` holds this project's pyproject.toml."""
    try:
        with (folder / "pyproject.toml").open("rb") as handle:
            return tomllib.load(handle).get("project", {}).get("name") == PROJECT_NAME
    except (OSError, tomllib.TOMLDecodeError):
        return False


INSTALLED_IN = Path(__file__).resolve().parents[1]  # the folder this code was installed from


def project_dir(cwd: Path | None = None, installed_in: Path = INSTALLED_IN) -> Path:
    """The project folder: the working folder or the nearest above it that is the project, else the one this code
    is installed from (an editable install, as `make run` makes); ProjectNotFound names every folder looked in."""
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if is_project(folder):
            return folder
    if is_project(installed_in):
        return installed_in
    raise ProjectNotFound(
        f"No var/ folder found: ccs looked for the project folder (the one with its pyproject.toml, named "
        f"{PROJECT_NAME}) in {here} and each folder above it, and where ccs is installed ({installed_in}). Run ccs "
        f"from the project folder, or set CCS_VAR_DIR to the var/ folder of the system you mean.")


def var_dir() -> Path:
    """The folder that holds embedded databases, the filesystem broker and logs: CCS_VAR_DIR, else var/ in the
    project folder (`project_dir`), wherever ccs is run from; never a var/ of its own somewhere else."""
    explicit = os.environ.get("CCS_VAR_DIR", "").strip()
    path = Path(explicit).resolve() if explicit else project_dir() / "var"
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_number(environ: Mapping[str, str], name: str, default: float, *, kind: type = int,
               minimum: float | None = None, maximum: float | None = None):
    """A whole number (or, with kind=float, any number) from the environment, checked against its range."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a {'whole number' if kind is int else 'number'}, not {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, not {raw!r}")
    return value


def env_delays(environ: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """Rising waits in seconds, comma-separated (e.g. `1,5,30,120,600`): from 0.01 s to a day each."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name} must be seconds separated by commas, such as 1,5,30, not {raw!r}") from None
    if any(not 0.01 <= d <= 86400 for d in delays) or list(delays) != sorted(delays):
        raise SettingsError(f"{name} must be rising waits from 0.01 to 86400 seconds, not {raw!r}")
    return delays


def env_text(environ: Mapping[str, str], name: str, default: str = "", *, choices: tuple[str, ...] = ()) -> str:
    """A text setting, one of `choices` if given."""
    value = environ.get(name, default).strip()
    if choices and value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def quiet_hours_from(environ: Mapping[str, str]) -> str | None:
    """CCS_QUIET_HOURS: every community's quiet hours ("21:00-08:00"), "off" for none; None (unset) keeps each
    community's own."""
    raw = environ.get("CCS_QUIET_HOURS")
    if raw is None:
        return None
    value = raw.strip()
    if value.lower() in ("", "off", "none"):
        return "off"
    try:
        start, end = value.split("-")
        dt_time.fromisoformat(start.strip()), dt_time.fromisoformat(end.strip())
    except ValueError:
        raise SettingsError(f"CCS_QUIET_HOURS must be like 21:00-08:00, or off, not {raw!r}") from None
    return value


def load(service: str, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings of one process from the environment, once; SettingsError names a bad variable."""
    if service not in SERVICES + ("frontdoor", "cli"):
        raise ValueError(f"unknown service {service!r}")
    environ = os.environ if environ is None else environ
    var = var_dir()
    return Settings(
        service=service,
        var_dir=var,
        database_url=database_url(service, var) if service in SERVICES else "",
        broker_url=environ.get("BROKER_URL", "filesystem://"),
        secret_key=secret_key(var),
        public_url=environ.get("PUBLIC_URL", "http://localhost:8000").rstrip("/"),
        twilio_account_sid=environ.get("TWILIO_ACCOUNT_SID") or None,
        twilio_auth_token=environ.get("TWILIO_AUTH_TOKEN") or None,
        twilio_from_number=environ.get("TWILIO_FROM_NUMBER") or None,
        twilio_base_url=environ.get("TWILIO_API_BASE_URL") or None,
        twilio_messaging_service_sid=environ.get("TWILIO_MESSAGING_SERVICE_SID") or None,
        default_region=env_text(environ, "CCS_DEFAULT_REGION", "GB", choices=("GB", "CA")),
        max_attempts=env_number(environ, "CCS_MAX_ATTEMPTS", 5, minimum=1, maximum=100),
        poll_interval=env_number(environ, "CCS_POLL_INTERVAL", 0.1, kind=float, minimum=0.001, maximum=60),
        token_lifetime_days=env_number(environ, "CCS_TOKEN_LIFETIME_DAYS", 30, minimum=1, maximum=366),
        retry_delays=env_delays(environ, "CCS_RETRY_DELAYS", (1, 5, 30, 120, 600)),
    )
