import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
application = get_wsgi_application()

from governance.startup import refuse_development_secret_key  # noqa: E402  (needs the settings loaded above)

refuse_development_secret_key()
