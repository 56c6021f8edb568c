"""Suite-wide settings for every test.

Hypothesis's tests here check properties, not timings: its default 200 ms deadline per example
fails a property by chance when a busy CI machine stalls one example. The suite's profile has
no deadline (pytest-timeout stays the hang guard); a test's own `@settings(...)` inherits it.
"""

from hypothesis import settings

settings.register_profile("fedcredit", deadline=None)
settings.load_profile("fedcredit")
