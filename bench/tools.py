"""``aecodec tools``: the bench's single-purpose measurements and fuzzers, one click command
each (their modules also run as ``python -m aecodec.bench.<module>``, the same command).

Loaded by name when run, like the `aecodec` group's own optional commands, so listing them
imports none of their dependencies (atheris, for one, is not installed with aecodec).
"""

from __future__ import annotations

import importlib

import click

# name: (module, one line of help)
TOOLS = {
    "fuzz": ("fuzz", "Decode mutated streams: each must decode or raise an AecodecError."),
    "guided-fuzz": ("guided_fuzz", "Coverage-guided fuzzing of the parser and decoder "
                    "(atheris)."),
    "large": ("large", "Time and peak memory of large images and hostile streams."),
    "profile": ("profile", "Where decoding time goes, per stage and ONNX operator."),
    "effort": ("effort", "Rate saved by encoder effort on a Kodak subset."),
    "synthesis-width": ("synthesis_width", "Synthesis CPU time by channel width."),
    "overfit-steps": ("overfit_steps", "RD cost of real overfit-family streams against "
                      "training steps."),
    "overfit-step": ("overfit_step", "Where one overfit training step spends its time."),
    "context-projection": ("context_projection", "A context model's saving as a BD-rate "
                           "on a bench run."),
}


class ToolGroup(click.Group):
    """Subcommands imported from their modules on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(TOOLS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in TOOLS:
            return None
        return importlib.import_module(f"aecodec.bench.{TOOLS[name][0]}").command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, TOOLS[name][1]) for name in self.list_commands(ctx)])


@click.group("tools", cls=ToolGroup, context_settings={"help_option_names": ["-h", "--help"]})
def tools() -> None:
    """The bench's single-purpose tools: fuzzers, large images, profiles, effort and
    synthesis-width measurements (docs/bench.md). Each has its own --help."""
