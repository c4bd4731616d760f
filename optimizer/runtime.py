"""Runtime: run a compiled program (fixed instructions and demos) on new inputs, no optimizer involved.

The deployed artifact is static. `Runtime.from_bundle` verifies a signed export bundle against the pinned
public key before running it, so a production service executes exactly the content reviewers approved, signed
by the organisation's key (running a bundle signed by any key needs `allow_any_signing_key=True`, logged).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optimizer.errors import BundleError, SpecError
from optimizer.execution import Prediction, run_program
from optimizer.lm import LM, LMConfig
from optimizer.program import Program

logger = logging.getLogger(__name__)


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
                    allow_any_signing_key: bool = False, lm: LM | None = None, **lm_overrides: Any) -> Runtime:
        """Verify a signed bundle (a dict, or the path of a bundle file) and bind its program to an LM.

        The bundle must be signed by `trusted_public_key` (its fingerprint is compared); without one, only
        `allow_any_signing_key=True` lets it run, with a warning in the log. Without `lm`, the LM configuration
        the version was approved for is used (model, temperature, max tokens), with `lm_overrides` for
        deployment details such as api_base or cache_path.

        Raises:
            BundleError: no pinned key (and no opt-out), an altered bundle, another signer, a duplicate key.
        """
        from optimizer.bundle import load_bundle, require_pinned_key, verify_bundle

        pinned = require_pinned_key(trusted_public_key, allow_any_signing_key=allow_any_signing_key,
                                    who="Runtime.from_bundle", logger=logger)
        data = load_bundle(bundle) if isinstance(bundle, (str, Path)) else bundle
        verified = verify_bundle(data, trusted_public_key=trusted_public_key)
        if pinned is not None and verified.key_fingerprint != pinned:  # verify_bundle checks it; stated here too
            raise BundleError(f"bundle signed by key {verified.key_fingerprint}, not the pinned key {pinned}")
        program = Program.from_dict(verified.payload["program"])
        if lm is None:
            approved = {k: v for k, v in verified.payload.get("lm", {}).items() if v is not None}
            lm = LM(LMConfig.from_dict({**approved, **lm_overrides}))
        return cls(program, lm)
