"""Fixtures for the container tests: Docker itself (started here when it is not running,
and stopped again), and the repository's image, built once per session.

Everything a test creates is named ``arting-test-<random>-…``: its containers, volumes
and networks are removed when it ends, the image's tag when the session ends; only the
base image is kept, as a cache (see ``docker_harness``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from docker_harness import (Docker, Unavailable, base_image, build_image, daemon_answers,
                            find_cli, start_dockerd, stop_process)


@pytest.fixture(scope="session")
def docker(tmp_path_factory) -> Iterator[Docker]:
    try:
        cli = find_cli()
        started = None if daemon_answers(cli) else \
            start_dockerd(cli, tmp_path_factory.mktemp("dockerd") / "dockerd.log")
    except Unavailable as exc:
        pytest.skip(f"no Docker here: {exc}")
    client = Docker(cli)
    try:
        yield client
    finally:
        client.clean_up()
        if started is not None:
            stop_process(started)


@pytest.fixture(scope="session")
def base(docker: Docker) -> str:
    try:
        return base_image(docker)
    except Unavailable as exc:
        pytest.skip(f"no base image: {exc}")


@pytest.fixture(scope="session")
def image(docker: Docker, base: str) -> str:
    return build_image(docker, base)


@pytest.fixture(autouse=True)
def remove_what_the_test_made(docker: Docker) -> Iterator[None]:
    yield
    docker.clean_up(tags=False)
