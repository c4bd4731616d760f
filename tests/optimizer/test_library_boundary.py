"""optimizer/ is a library: importing all of it needs no Django settings and pulls in no Django."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_optimizer_imports_without_django_or_settings():
    code = ("import pkgutil, importlib, sys, optimizer\n"
            "for m in pkgutil.iter_modules(optimizer.__path__):\n"
            "    if m.name == '__main__': continue\n"
            "    importlib.import_module('optimizer.' + m.name)\n"
            "assert not any(name == 'django' or name.startswith('django.') for name in sys.modules), 'django imported'\n"
            "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_importing_the_facade_does_not_load_litellm_or_optuna():
    code = "import sys, optimizer; print(sorted(m for m in ('litellm', 'optuna', 'llama_cpp') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
