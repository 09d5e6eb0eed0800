"""Reading the host's apt mirror and pip settings for image builds (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mllib.runtime.base_image import (
    BaseImageError,
    host_debian_mirror,
    pip_build_args,
    pip_build_settings,
)

HOST_PIP_CONFIG = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.extra-index-url='file:///opt/pypi/simple https://mirror.example/simple'
global.index-url='https://pypi.example/simple'
install.trusted-host='mirror.example'
"""


def test_keeps_http_indexes_and_skips_local_ones() -> None:
    settings = pip_build_settings(config_list=HOST_PIP_CONFIG, environ={})

    assert settings["index_url"] == "https://pypi.example/simple"
    assert settings["extra_index_urls"] == ["https://mirror.example/simple"]
    assert settings["find_links"] == []
    assert settings["trusted_hosts"] == ["mirror.example"]
    assert any("file:///opt/pypi/simple" in reason for reason in settings["skipped"])
    assert any("/opt/wheels" in reason for reason in settings["skipped"])


def test_environment_wins_over_config_files(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    environ = {
        "PIP_INDEX_URL": "http://devpi.local:3141/root/pypi/+simple/",
        "PIP_CERT": str(bundle),
        "HTTPS_PROXY": "http://proxy.local:3128",
    }

    settings = pip_build_settings(config_list=HOST_PIP_CONFIG, environ=environ)

    assert settings["index_url"] == "http://devpi.local:3141/root/pypi/+simple/"
    assert settings["ca_bundle"] == str(bundle)
    assert pip_build_args(settings) == {
        "PIP_INDEX_URL": "http://devpi.local:3141/root/pypi/+simple/",
        "PIP_EXTRA_INDEX_URL": "https://mirror.example/simple",
        "PIP_TRUSTED_HOST": "mirror.example",
        "HTTPS_PROXY": "http://proxy.local:3128",
    }


def test_refuses_an_index_with_credentials_without_echoing_them() -> None:
    config = "global.index-url='https://alice:s3cret@pypi.corp.example/simple'\n"

    with pytest.raises(BaseImageError, match="carries credentials") as caught:
        pip_build_settings(config_list=config, environ={})

    assert "s3cret" not in str(caught.value)
    assert "alice" not in str(caught.value)


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n"
        "# http://snapshot.debian.org/archive/debian-security/20250520T000000Z\n"
        "URIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb deb-src\n"
        "URIs: https://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )

    assert host_debian_mirror(apt_dir=tmp_path) == "https://mirror.example/debian"


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://ftp.example/debian bookworm main\n"
    )

    assert host_debian_mirror(apt_dir=tmp_path) == "http://ftp.example/debian"


def test_mirror_falls_back_to_deb_debian_org(tmp_path: Path) -> None:
    assert host_debian_mirror(apt_dir=tmp_path) == "http://deb.debian.org/debian"
