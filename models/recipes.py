"""Training recipes, registered by name: what each one trains on and how its head starts.

``TrainParams.recipe`` names one; the train, mine and views stages, the pipeline and the
trainer ask the recipe (``recipe_of(params).uses_views``) instead of testing its name.
"""

from __future__ import annotations

from dataclasses import dataclass

from street2shop.registry import Registry


@dataclass(frozen=True)
class Recipe:
    name: str
    #: trains on the views stage's cached descriptors (a head on the frozen backbone), not photos
    uses_views: bool
    #: the backbone's weights stay frozen
    frozen_backbone: bool
    #: the embedder's head: "residual" (starts as the pretrained descriptor) or "projection"
    head: str


RECIPES: Registry[Recipe] = Registry("recipe")
#: a residual head on the frozen pretrained backbone, trained on cached descriptors of many
#: views (:mod:`street2shop.models.views`): thousands of steps a minute on CPU
RECIPES.add("head", Recipe("head", uses_views=True, frozen_backbone=True, head="residual"))
#: the whole network on photos (slow on CPU; for a GPU)
RECIPES.add("fine_tune", Recipe("fine_tune", uses_views=False, frozen_backbone=False, head="projection"))


def recipe_of(params) -> Recipe:
    """The recipe ``params.recipe`` names (``TrainParams``, or anything with a ``recipe``)."""
    return RECIPES.get(params.recipe)
