"""Runtime: run a compiled program (fixed instructions and demos) on new inputs, no optimizer involved.

The deployed artifact is static. `Runtime.from_bundle` verifies a signed export bundle before running it, so a
production service executes exactly the content reviewers approved.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optimizer.errors import SpecError
from optimizer.execution import Prediction, run_program
from optimizer.lm import LM, LMConfig
from optimizer.program import Program


class Runtime:
    """A frozen program bound to an LM."""

    def __init__(self, program: Program, lm: LM) -> None:
        self.program = program
        self.lm = lm

    def __call__(self, **inputs: Any) -> Prediction:
        return self.run(inputs)

    def run(self, inputs: dict[str, Any]) -> Prediction:
        missing = [name for name in self.program.input_names if name not in inputs]
        if missing:
            raise SpecError(f"missing input(s) {', '.join(missing)}; the program reads "
                            f"{', '.join(self.program.input_names)}")
        return run_program(self.program, inputs, self.lm)

    def run_many(self, inputs: Sequence[dict[str, Any]]) -> list[Prediction]:
        return self.lm.map(self.run, list(inputs))

    @classmethod
    def from_file(cls, path: str | Path, lm: LM) -> Runtime:
        """Load a compiled program JSON written by `python -m optimizer optimize --out`."""
        return cls(Program.from_json(Path(path).read_text(encoding="utf-8")), lm)

    @classmethod
    def from_bundle(cls, bundle: dict[str, Any] | str | Path, *, trusted_public_key: bytes | str | None = None,
                    lm: LM | None = None, **lm_overrides: Any) -> Runtime:
        """Verify a signed bundle (raises BundleError when altered) and bind its program to an LM.

        Without `lm`, the LM configuration the version was approved for is used (model, temperature,
        max tokens), with `lm_overrides` for deployment details such as api_base or cache_path.
        """
        from optimizer.bundle import verify_bundle

        data = json.loads(Path(bundle).read_text(encoding="utf-8")) if isinstance(bundle, (str, Path)) else bundle
        verified = verify_bundle(data, trusted_public_key=trusted_public_key)
        program = Program.from_dict(verified.payload["program"])
        if lm is None:
            approved = {k: v for k, v in verified.payload.get("lm", {}).items() if v is not None}
            lm = LM(LMConfig.from_dict({**approved, **lm_overrides}))
        return cls(program, lm)
