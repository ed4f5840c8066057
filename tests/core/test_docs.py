"""The docs stay true to the code: generated files are current, example specs load, the CLI
reference names real commands, and the exit-code page matches the error tree."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from deployer import config, errors
from deployer.cli import cli

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
DOCS = ROOT / "docs"
CLOUD = re.compile(r"-(aws|gcp|azure)\.ya?ml$")
SPECS = sorted(p for p in [*CONFIGS.glob("*.yaml"), *CONFIGS.glob("*.yml")] if p.name != "schema.json")


@pytest.mark.timeout(60)
def test_generated_docs_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=55,
    )
    assert proc.returncode == 0, f"run `uv run python scripts/gen_docs.py`:\n{proc.stdout}{proc.stderr}"


def _environ(path: Path) -> dict[str, str]:
    """Placeholders for the variables a spec requires (``${VAR}`` without a default); the
    ``${VAR:-default}`` ones stay unset so their defaults are what is checked."""
    required = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text())
    return {name: f"example-{name.lower().replace('_', '-')}" for name in required}


def _environments(path: Path) -> list[str | None]:
    data = config.read_yaml(path)
    envs = data.get("environments") or {}
    return [None, *sorted(envs)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_example_spec_loads(path: Path) -> None:
    assert SPECS, "configs/ holds no example specs"
    for env in _environments(path):
        data = config.resolve(config.read_yaml(path), env_name=env, environ=_environ(path),
                              base_dir=path.parent.resolve())
        model_path = (data.get("model") or {}).get("path")
        if CLOUD.search(path.name) or (model_path and not Path(model_path).exists()):
            # the provider package may not be installed / the model file is written by a script
            spec = config.validate(data, check_paths=False)
        else:
            spec = config.load_spec(path, env=env, environ=_environ(path))
        assert spec.name


@pytest.mark.timeout(60)
def test_local_example_specs_pass_the_local_provider_checks() -> None:
    from deployer.api import make_provider

    for path in SPECS:
        if CLOUD.search(path.name):
            continue
        for env in _environments(path):
            data = config.resolve(config.read_yaml(path), env_name=env, environ=_environ(path),
                                  base_dir=path.parent)
            spec = config.validate(data, check_paths=False)
            if spec.target.provider == "local":
                make_provider(spec.target, spec.provider_options).validate(spec)


def _cli_commands() -> set[str]:
    ctx = click.Context(cli, info_name="deployer")
    return {n for n in cli.list_commands(ctx) if not cli.get_command(ctx, n).hidden}  # type: ignore[union-attr]


@pytest.mark.timeout(60)
def test_cli_reference_names_real_commands() -> None:
    text = (DOCS / "cli.md").read_text()
    documented = set(re.findall(r"^#+ `deployer ([a-z][\w-]*)`", text, flags=re.M))
    real = _cli_commands()
    assert documented, "docs/cli.md documents no command"
    assert documented <= real, f"documented but not in the CLI: {sorted(documented - real)}"
    assert real <= documented, f"in the CLI but not documented: {sorted(real - documented)}"
    # every option the reference shows exists on its command
    for name in documented:
        cmd = cli.get_command(click.Context(cli), name)
        assert cmd is not None
        section = text.split(f"`deployer {name}`", 1)[1].split("\n#", 1)[0]
        shown = set(re.findall(r"`(--[\w-]+)", section))
        flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        assert shown <= flags, f"deployer {name}: {sorted(shown - flags)} not options of the command"


@pytest.mark.timeout(60)
def test_hand_written_docs_name_real_commands_and_flags() -> None:
    real = _cli_commands()
    ctx = click.Context(cli)
    for page in ("quickstart.md", "concepts.md", "state.md", "strategies-and-gates.md", "exit-codes.md"):
        text = (DOCS / page).read_text()
        for name, rest in re.findall(r"deployer ([a-z][\w-]*)((?: [^\s`|;&#]+)*)", text):
            if name not in real:
                continue  # prose such as "deployer keeps"
            cmd = cli.get_command(ctx, name)
            assert cmd is not None
            if isinstance(cmd, click.Group):  # deployer ledger push ...: the subcommand's flags
                sub = rest.split()[0] if rest.split() else ""
                cmd = cmd.get_command(ctx, sub)
                assert cmd is not None, f"{page}: deployer {name} has no subcommand {sub!r}"
            flags = {o for p in cmd.params for o in p.opts} | {"--help", "-h"}
            used = set(re.findall(r"(--[a-z][\w-]*)", rest))
            assert used <= flags, f"{page}: deployer {name} has no {sorted(used - flags)}"


def _error_classes() -> dict[str, type[errors.DeployerError]]:
    return {
        n: c for n, c in vars(errors).items()
        if inspect.isclass(c) and issubclass(c, errors.DeployerError) and c.__module__ == errors.__name__
    }


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s:|-]+\|$", line):
            rows.append([c.strip().strip("`") for c in line.strip().strip("|").split("|")])
    return rows


@pytest.mark.timeout(60)
def test_exit_codes_page_matches_the_error_tree() -> None:
    text = (DOCS / "exit-codes.md").read_text()
    classes = _error_classes()
    mapped: dict[str, int] = {}
    for row in _table_rows(text):
        if row and row[0] in classes:
            mapped[row[0]] = int(row[1])
    assert set(mapped) == set(classes), f"missing from docs/exit-codes.md: {sorted(set(classes) - set(mapped))}"
    for name, code in mapped.items():
        assert classes[name].exit_code == code, f"{name}: docs say {code}, errors.py says {classes[name].exit_code}"


@pytest.mark.timeout(60)
def test_exit_codes_page_matches_the_cli_docstring() -> None:
    import deployer.cli

    doc = deployer.cli.__doc__ or ""
    in_cli = {int(m.group(1)): m.group(2).strip() for m in re.finditer(r"^(\d+)\s{2,}(.+)$", doc, flags=re.M)}
    assert in_cli, "the exit code table in deployer/cli.py's docstring is missing"
    text = (DOCS / "exit-codes.md").read_text()
    codes_section = text.split("## Codes", 1)[1].split("\n## ", 1)[0]
    in_docs = {int(r[0]): r[1] for r in _table_rows(codes_section) if r and r[0].isdigit()}
    assert in_docs == in_cli

