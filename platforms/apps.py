from django.apps import AppConfig


class PlatformsConfig(AppConfig):
    name = "platforms"
    verbose_name = "Merchants and platforms"

    def ready(self):
        from platforms import signals  # noqa: F401 - connects the bag post_save receiver
        from platforms.forwarding import forwarding_hooks_install

        # refunds cannot import platforms: it reaches the platforms' forwarding through these hooks.
        forwarding_hooks_install()
