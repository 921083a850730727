"""``python -m street2shop.cli``: the ``street2shop`` command."""

from street2shop.cli import app

app(prog_name="street2shop")
