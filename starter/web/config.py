"""The web app's own settings (environment, prefix ``OVERTIME_``), beside ``Settings``.

* ``OVERTIME_ADMIN_EMAIL`` / ``OVERTIME_ADMIN_PASSWORD`` (admin@overtime.local /
  dev-admin-password): the admin console's sign-in.
* ``OVERTIME_WEB_SESSION_SECRET`` (a dev value): signs the session cookie; set it in
  production.
* ``OVERTIME_WEB_HTTPS_ONLY`` (false): the session cookie only over HTTPS (``Secure``).
* ``OVERTIME_WEB_SESSION_MAX_AGE_SECONDS`` (28800): a session lasts 8 hours.
* ``OVERTIME_WEB_LOGIN_MAX_FAILURES`` (5) / ``…_PER_IP`` (30) within
  ``OVERTIME_WEB_LOGIN_WINDOW_SECONDS`` (900): the login throttle.
* ``OVERTIME_WEB_TEMPORAL_UI_URL`` (``http://{temporal_host}:{temporal_ui_port}``): where
  the admin console links workflows to.
* ``OVERTIME_WEB_UPGRADE_URL`` (``mailto:`` the sender address): where free plans are sent
  to upgrade.
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
    web_temporal_ui_url: str | None = None
    web_upgrade_url: str | None = None
