"""yoyo post-apply hook: (re)load every function, trigger function and view from sql/.

yoyo runs post-apply hooks only when a migration was pending, so ``gov.migrate()`` (and
``pygov migrate``) call ``run_post_apply`` themselves on every run.
"""

from yoyo import step

from pygov._resources import load_sql

steps = [step(load_sql())]
