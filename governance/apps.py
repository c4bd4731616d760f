from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Prompt governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance import signals  # noqa: F401  (registers receivers)
        from governance import evaluator  # noqa: F401  (hands requested evaluations to the job backend)
        from governance import runner  # noqa: F401  (hands requested runs to the job backend)
        from governance import webhooks  # noqa: F401  (webhook receivers of the domain signals)
        from governance import notify  # noqa: F401  (notification receivers of the domain signals)
