"""`import deployer` and `deployer --help` load no cloud SDK (and stay cheap)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CLOUD = ("boto3", "botocore", "google.cloud", "azure", "sagemaker", "deployer_aws", "deployer_gcp", "deployer_azure")

PROBE = """
import sys
{setup}
roots = {{'boto3', 'botocore', 'sagemaker', 'azure', 'deployer_aws', 'deployer_gcp', 'deployer_azure', 'grpc'}}
bad = sorted(
    m for m in sys.modules
    if m.split('.')[0] in roots or m.startswith(('google.cloud.', 'google.api_core', 'google.auth'))
)
# (the bare 'google' / 'google.cloud' namespaces are made at startup by google-cloud-aiplatform's -nspkg.pth)
print('LOADED:' + ','.join(bad))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "setup",
    [
        "import deployer",
        "import deployer, deployer.api, deployer.engine, deployer.ledger, deployer.planning",
        "from deployer.cli import cli\ntry:\n    cli(['--help'])\nexcept SystemExit:\n    pass",
        "from deployer.cli import cli\ntry:\n    cli(['deploy', '--help'])\nexcept SystemExit:\n    pass",
        "from deployer.cli import cli\ntry:\n    cli(['providers'])\nexcept SystemExit:\n    pass",
    ],
)
def test_no_cloud_sdk_imported(setup: str) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "LOADED:", out.stdout


@pytest.mark.timeout(60)
def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys\nfrom deployer.cli import cli\ntry:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('pydantic', 'rich', 'numpy', 'sklearn', 'yaml', 'httpx')\n"
        "print('LOADED:' + ','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "LOADED:", out.stdout


def test_every_verb_stays_a_function_after_the_core_is_imported() -> None:
    """A submodule named like a verb would replace ``deployer.<verb>`` once imported (it did for
    ``plan`` and ``guard``): after importing the whole core, every verb is still the callable."""
    code = (
        "import deployer, deployer.api, deployer.engine, deployer.planning, deployer.guards, deployer.adoption\n"
        "import types\n"
        "bad = [n for n in deployer.__all__ if isinstance(getattr(deployer, n), types.ModuleType)]\n"
        "print('MODULES:' + ','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "MODULES:\n" in out.stdout, out.stdout
