"""``flipbook serve``: the HTTP server (job API, A1111 API subset, Deforum API) in one uvicorn process.

A thin adapter: options become :class:`~flipbook.server.settings.ServerSettings`, checked before anything
heavy is imported (a non-loopback ``--host`` without ``--auth``/``--token`` is refused here), then uvicorn
serves :func:`flipbook.server.create_app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flipbook.server.settings import DEFAULT_PORT, ServerSettings, parse_auth


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app`` (the main CLI calls this)."""
    app.command("serve")(serve)


def serve(
    host: Annotated[
        str, typer.Option("--host", help="address to bind; non-loopback needs --auth or --token")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port")] = DEFAULT_PORT,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            "--models-dir",
            envvar="FLIPBOOK_MODELS_DIR",
            help="A1111 or ComfyUI install (or its models/ folder)",
        ),
    ] = None,
    runs_dir: Annotated[
        Path,
        typer.Option("--runs-dir", help="where jobs render (<runs-dir>/<job id>/) and flipbook.db lives"),
    ] = Path("runs"),
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="worker processes, jobs run at once (default: one per GPU, each pinned to its GPU; one "
            "without GPUs; 0: queue only, run nothing)",
        ),
    ] = None,
    heartbeat_timeout: Annotated[
        float,
        typer.Option(
            "--heartbeat-timeout",
            help="seconds a worker may stay silent before it is killed and its job re-queued (once)",
        ),
    ] = 60.0,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="render on Ray actors: 'local' (a Ray instance started here), 'auto' (the cluster `ray start` "
            "made on this machine) or a cluster's address; --workers is then how many jobs run at once",
        ),
    ] = None,
    ray_actors: Annotated[
        int, typer.Option("--ray-actors", help="with --ray on a cluster without GPUs: how many CPU actors")
    ] = 2,
    auth: Annotated[
        str | None, typer.Option("--auth", envvar="FLIPBOOK_AUTH", help="USER:PASSWORD for HTTP Basic auth")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="FLIPBOOK_TOKEN", help="Bearer token every request must carry"),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-origin", help="another origin (http://host:port) allowed to POST/DELETE, with CORS"
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host", help="another Host name a loopback server answers (e.g. behind a proxy)"
        ),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="largest request body")] = 50.0,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level")] = "info",
) -> None:
    """Serve flipbook over HTTP: a job queue for specs (JSON, TOML, Deforum settings) with progress events,
    the AUTOMATIC1111 API subset clients use (/sdapi/v1/txt2img, img2img, progress, sd-models, ...) and the
    Deforum batch API (/deforum_api). Jobs and their state live in <runs-dir>/flipbook.db and survive
    restarts; a job running when the server died is marked interrupted and can be resumed. Jobs run in
    worker processes, never in the server's: a worker that dies or stops answering has its job re-queued once
    and resumed from its frames on disk."""
    if workers is None:
        from flipbook.server.processes import default_worker_count

        workers = default_worker_count()
    settings = ServerSettings(
        runs_dir=runs_dir, host=host, port=port, models_dir=models_dir, workers=workers, auth=parse_auth(auth),
        token=token, allow_origins=tuple(allow_origin or ()), allow_hosts=tuple(allow_host or ()),
        max_upload_mb=max_upload_mb, heartbeat_timeout_s=heartbeat_timeout, ray=ray, ray_actors=ray_actors,
    ).checked()  # fmt: skip
    import uvicorn

    from flipbook.server import create_app

    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"flipbook serving http://{shown}:{port} (runs: {settings.runs_dir}, workers: {workers})", err=True
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s),
    )
