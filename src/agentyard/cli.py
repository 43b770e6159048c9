"""The ``agentyard`` command: serve, migrate, worker, keys, scripted-model; and, through the
Python client, run, tasks, show, logs, continue, cancel, diff, files, compare, select, agents,
git (in ``cli_tasks`` and ``cli_admin``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from pydantic import ValidationError

from agentyard.settings import Settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Agentyard: coding agents as tasks."
)
keys_app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
app.add_typer(keys_app, name="keys")


def _version(value: bool) -> None:
    if value:
        from agentyard import __version__

        typer.echo(f"agentyard {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    url: str | None = typer.Option(
        None, envvar="AGENTYARD_URL", help="The server (default http://127.0.0.1:8080)."
    ),
    key: str | None = typer.Option(
        None,
        envvar="AGENTYARD_KEY",
        help="API key (default ./.agentyard/admin.key).",
        show_default=False,
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Agentyard: coding agents as tasks."""
    from agentyard.cli_tasks import Options

    Options.url, Options.key = url, key


def _settings() -> Settings:
    """The settings, logging configured, and umask 0o077: from here on, whatever this
    process creates (the data dir, database, keys, workspaces, agents' files) is its user's
    only."""
    from agentyard import logging as ay_logging
    from agentyard.datadir import use_private_umask

    use_private_umask()
    try:
        settings = Settings()
    except ValidationError as exc:
        # A configuration mistake is named, setting by setting; a traceback says nothing more.
        for problem in exc.errors():
            name = "AGENTYARD_" + "_".join(str(p) for p in problem["loc"][:1]).upper()
            typer.echo(f"invalid configuration: {name}: {problem['msg']}", err=True)
        raise typer.Exit(2) from None
    ay_logging.configure(settings.log_level, settings.log_format)
    return settings


@app.command()
def serve(
    host: str | None = typer.Option(
        None, help="Address to bind (default AGENTYARD_HOST or 127.0.0.1)."
    ),
    port: int | None = typer.Option(None, help="Port (default AGENTYARD_PORT or 8080)."),
    workers: bool = typer.Option(True, help="Run agents in this process (--no-workers: API only)."),
) -> None:
    """Serve the Agent API (migrating the database first).

    SIGTERM: the runs executing may finish within AGENTYARD_SHUTDOWN_GRACE_SECONDS, then
    are interrupted; queued runs wait for the next start. A second signal stops at once."""
    from agentyard.api.app import create_app
    from agentyard.server import Agentyard
    from agentyard.serving import serve as serve_http

    settings = _settings()
    yard = Agentyard(settings, run_workers=workers)
    application = create_app(settings, yard=yard)
    serve_http(application, yard, host or settings.host, port or settings.port)


@app.command()
def worker(
    concurrency: int = typer.Option(2, min=1, help="Runs executed at once by this worker."),
) -> None:
    """Execute runs from the PostgreSQL queue (scale-out). SIGTERM/SIGINT: take no more
    jobs, let the runs finish within AGENTYARD_SHUTDOWN_GRACE_SECONDS, then interrupt them;
    a second signal interrupts them at once."""
    import signal

    import structlog

    from agentyard.server import Agentyard

    settings = _settings()

    async def main() -> None:
        yard = Agentyard(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, yard.signalled, loop)
        stop_metrics = None
        if settings.worker_metrics_port is not None:
            from agentyard.metrics_http import serve_in_thread

            token = settings.metrics_token
            port, stop_metrics = serve_in_thread(
                yard.metrics,
                settings.host,
                settings.worker_metrics_port,
                token.get_secret_value() if token else None,
            )
            structlog.get_logger(__name__).info(
                "metrics listening", url=f"http://{settings.host}:{port}/metrics"
            )
        try:
            await yard.run_worker(concurrency)
        finally:
            await yard.stop()
            if stop_metrics is not None:
                stop_metrics()

    asyncio.run(main())


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from agentyard.datadir import ensure_private_dir, make_database_private
    from agentyard.store.db import migrate as run_migrate

    settings = _settings()
    ensure_private_dir(settings.resolved_data_dir)
    run_migrate(settings.db_url)
    make_database_private(settings.db_url)
    typer.echo("database is up to date")


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., help="A name to recognise the key by."),
    user: str = typer.Option("admin", help="The user the key acts as."),
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    from agentyard.core import apikeys
    from agentyard.datadir import ensure_private_dir, make_database_private
    from agentyard.store.db import create_engine
    from agentyard.store.db import migrate as run_migrate
    from agentyard.store.store import Store

    settings = _settings()
    ensure_private_dir(settings.resolved_data_dir)
    run_migrate(settings.db_url)
    make_database_private(settings.db_url)

    async def create() -> str:
        store = Store(create_engine(settings.db_url))
        key_id, secret, key_hash = apikeys.generate()
        try:
            await store.api_keys.add(key_id, user, name, key_hash)
        finally:
            await store.close()
        return secret

    typer.echo(asyncio.run(create()))


@app.command("scripted-model")
def scripted_model(
    script: Path = typer.Option(..., exists=True, dir_okay=False, help="Script JSON file."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8765),
) -> None:
    """Serve a scripted Anthropic Messages + OpenAI Responses model on HOST:PORT."""
    from agentyard.testing.scripted_model import serve as serve_model

    serve_model(script, host, port)


def _register() -> None:
    from agentyard import cli_admin, cli_tasks

    cli_tasks.register(app)
    cli_admin.register(app, keys_app)


_register()

if __name__ == "__main__":
    app()
