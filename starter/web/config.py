"""The web app's own settings (environment, prefix ``OVERTIME_``), beside ``Settings``.

* ``OVERTIME_ADMIN_EMAIL`` / ``OVERTIME_ADMIN_PASSWORD`` (admin@overtime.local /
  dev-admin-password): the admin console's sign-in.
* ``OVERTIME_WEB_SESSION_SECRET`` (a dev value): the HMAC key of the stored session ids
  and one-time codes; set it in production (changing it ends every session).
* ``OVERTIME_WEB_HTTPS_ONLY`` (false): the session cookie only over HTTPS (``Secure``).
* ``OVERTIME_WEB_SESSION_MAX_AGE_SECONDS`` (28800): a signed-in session ends 8 hours after
  sign-in, however active it is.
* ``OVERTIME_WEB_SESSION_ANONYMOUS_MAX_AGE_SECONDS`` (1800): a visitor's session before
  sign-in (the login form's CSRF token, the language) lasts 30 minutes;
  ``OVERTIME_WEB_SESSION_MAX_ANONYMOUS`` (100000) of them at most (the oldest go first).
* ``OVERTIME_WEB_LOGIN_MAX_FAILURES_PER_IP`` (30) failures from one client address within
  ``OVERTIME_WEB_LOGIN_WINDOW_SECONDS`` (900): that address gets 429 until they age out.
* Per account: from ``OVERTIME_WEB_LOGIN_DELAY_AFTER_FAILURES`` (3) failures on, every
  answer waits ``OVERTIME_WEB_LOGIN_DELAY_SECONDS`` (0.25), doubling per failure, at most
  ``OVERTIME_WEB_LOGIN_DELAY_MAX_SECONDS`` (4); from ``OVERTIME_WEB_LOGIN_MAX_FAILURES``
  (5) on, the right password alone is not enough: a one-time code is emailed to the owner
  (valid ``OVERTIME_WEB_LOGIN_CODE_TTL_SECONDS``, 600; ``…_CODE_MAX_ATTEMPTS`` 5 tries).
  Nobody is ever locked out by failures of others.
* ``OVERTIME_WEB_TEMPORAL_UI_URL`` (``http://{temporal_host}:{temporal_ui_port}``): where
  the admin console links workflows to.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SESSION_SECRET = "dev-web-session-secret-change-me"


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OVERTIME_", extra="ignore")

    admin_email: str = "admin@overtime.local"
    admin_password: str = "dev-admin-password"
    web_session_secret: str = DEV_SESSION_SECRET
    web_https_only: bool = False
    web_session_max_age_seconds: int = Field(default=8 * 3600, gt=0)
    web_login_max_failures: int = Field(default=5, ge=1)
    web_login_max_failures_per_ip: int = Field(default=30, ge=1)
    web_login_window_seconds: int = Field(default=900, gt=0)
    web_session_anonymous_max_age_seconds: int = Field(default=1800, gt=0)
    web_session_max_anonymous: int = Field(default=100_000, ge=10)
    web_login_delay_after_failures: int = Field(default=3, ge=0)
    web_login_delay_seconds: float = Field(default=0.25, ge=0)
    web_login_delay_max_seconds: float = Field(default=4.0, ge=0, le=30)
    web_login_code_ttl_seconds: int = Field(default=600, gt=0)
    web_login_code_max_attempts: int = Field(default=5, ge=1)
    # A new code is emailed at most this often per login (the owner's mailbox, not flooded).
    web_login_code_resend_seconds: int = Field(default=60, ge=0)
    # And at most this many per login within the window (then the owner waits; a code
    # already sent still works): no endless supply of codes to guess at.
    web_login_code_max_per_window: int = Field(default=5, ge=1)
    web_login_code_window_seconds: int = Field(default=3600, gt=0)
    web_temporal_ui_url: str | None = None
