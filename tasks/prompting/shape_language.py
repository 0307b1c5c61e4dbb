"""The language of the procedural shapes world: a word vocabulary, captions built from an image's
attributes, class names, and several natural-language descriptions per class that stand in for
LLM-generated class prompts (synonyms, attribute sentences, and a few distractors).

Synonyms are rare in pre-training captions (under-represented words); the descriptions use
them freely, as an LLM would.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np

from tasks.images.sources.shapes import COLOR_NAMES, SHAPES, TEXTURES

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2

SHAPE_SYNONYMS = {"circle": ("disc",), "square": ("box",), "triangle": ("wedge",), "diamond": ("rhombus",),
                  "cross": ("plus",), "ring": ("hoop",)}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds",
           "cross": "crosses", "ring": "rings", "disc": "discs", "box": "boxes", "wedge": "wedges",
           "rhombus": "rhombi", "plus": "pluses", "hoop": "hoops"}
# Phrases that say what a shape looks like without naming it, as a description would.
SHAPE_PHRASES = {"circle": "round shape", "square": "shape with four corners", "triangle": "shape with three corners",
                 "diamond": "tilted square", "cross": "plus sign", "ring": "hollow circle"}
COLOR_SYNONYMS = {"red": ("crimson", "scarlet"), "green": ("emerald",), "blue": ("azure",), "yellow": ("golden",),
                  "magenta": ("pink",), "cyan": ("turquoise",), "orange": ("amber",), "white": ("ivory",)}
TEXTURE_WORDS = {"solid": ("plain", "filled"), "stripes": ("striped",), "checker": ("checkered",),
                 "dots": ("dotted", "spotted")}
COUNT_WORDS = ("zero", "one", "two", "three", "four")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
POSITIONS = (("top", "left"), ("top",), ("top", "right"), ("left",), ("centre",), ("right",),
             ("bottom", "left"), ("bottom",), ("bottom", "right"))
FUNCTION_WORDS = ("a", "an", "the", "photo", "picture", "of", "in", "that", "is", "and", "with", "coloured",
                  "object", "handwritten", "digit", "number", "written", "shape", "something", "corners",
                  "four", "three", "tilted", "sign", "hollow", "round")
# Words of distractor descriptions: plausible LLM chatter that names nothing in the image.
DISTRACTOR_SENTENCES = ("a photo of the sky", "a picture of a cat", "something you find in a kitchen",
                        "a bright and sunny day", "a photo of a car on the road")


def _all_words() -> list[str]:
    words = set(FUNCTION_WORDS) | set(COUNT_WORDS) | set(DIGIT_WORDS) | set(COLOR_NAMES) | set(SHAPES)
    words |= {w for group in (SHAPE_SYNONYMS, COLOR_SYNONYMS, TEXTURE_WORDS) for values in group.values() for w in values}
    words |= set(PLURALS.values()) | {w for phrase in SHAPE_PHRASES.values() for w in phrase.split()}
    words |= {w for position in POSITIONS for w in position}
    words |= {w for sentence in DISTRACTOR_SENTENCES for w in sentence.split()}
    return sorted(words)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Word-level vocabulary: id 0 pads, id 1 ends a text, id 2 is any unknown word."""

    words: tuple[str, ...]

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, length: int) -> np.ndarray:
        """Word ids of `text`, then the end-of-text id, padded to `length`."""
        ids = [self.index.get(word, UNK_ID) for word in text.split()] + [EOS_ID]
        if len(ids) > length:
            raise ValueError(f"{text!r} needs {len(ids)} tokens, more than the text length {length}")
        return np.array(ids + [PAD_ID] * (length - len(ids)), dtype=np.int64)

    def encode_all(self, texts: list[str], length: int) -> np.ndarray:
        return np.stack([self.encode(text, length) for text in texts]) if texts else np.zeros((0, length), np.int64)

    def decode(self, ids: np.ndarray) -> str:
        words = []
        for i in np.asarray(ids).tolist():
            if i == EOS_ID:
                break
            words.append(self.words[i])
        return " ".join(words)


@functools.lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    return Vocabulary((PAD, EOS, UNK, *_all_words()))


# --- words for attributes ----------------------------------------------------------------------

def _maybe_synonym(word: str, synonyms: dict[str, tuple[str, ...]], rng: np.random.Generator, rate: float) -> str:
    options = synonyms.get(word, ())
    return options[rng.integers(len(options))] if options and rng.random() < rate else word


def colour_word(colour: int, rng: np.random.Generator, synonym_rate: float = 0.0) -> str:
    return _maybe_synonym(COLOR_NAMES[colour], COLOR_SYNONYMS, rng, synonym_rate)


def shape_word(shape: int, rng: np.random.Generator, synonym_rate: float = 0.0, plural: bool = False) -> str:
    word = _maybe_synonym(SHAPES[shape], SHAPE_SYNONYMS, rng, synonym_rate)
    return PLURALS[word] if plural else word


def texture_word(texture: int, rng: np.random.Generator) -> str:
    options = TEXTURE_WORDS[TEXTURES[texture]]
    return options[rng.integers(len(options))]


def position_words(x: float, y: float) -> str:
    column, row = min(int(x * 3), 2), min(int(y * 3), 2)
    return " ".join(POSITIONS[row * 3 + column])


# --- captions of pre-training images -------------------------------------------------------------

def shape_caption(rng: np.random.Generator, *, shape: int, colour: int, texture: int, count: int,
                  x: float, y: float, synonym_rate: float, shape_synonym_rate: float | None = None) -> str:
    """One caption of a scene of `count` identical objects (x, y: the first object's centre).

    `shape_synonym_rate` (default `synonym_rate`) is how often the shape gets its synonym: near
    one, the shape's own name becomes a rare word.
    """
    col = colour_word(colour, rng, synonym_rate)
    tex = texture_word(texture, rng)
    synonym_rate = synonym_rate if shape_synonym_rate is None else shape_synonym_rate
    if count > 1:
        shapes = shape_word(shape, rng, synonym_rate, plural=True)
        choices = (f"{COUNT_WORDS[count]} {col} {shapes}", f"{COUNT_WORDS[count]} {tex} {col} {shapes}",
                   f"a picture of {COUNT_WORDS[count]} {col} {shapes}")
    else:
        name = shape_word(shape, rng, synonym_rate)
        where = position_words(x, y)
        choices = (f"a {col} {name}", f"a {tex} {col} {name}", f"a photo of a {col} {name}",
                   f"a {col} {name} in the {where}", f"a {tex} {col} {name} in the {where}",
                   f"a {col} {SHAPE_PHRASES[SHAPES[shape]]}", f"a {name} that is {col}")
    return choices[rng.integers(len(choices))]


def digit_caption(rng: np.random.Generator, *, digit: int, colour: int, synonym_rate: float) -> str:
    col = colour_word(colour, rng, synonym_rate)
    word = DIGIT_WORDS[digit]
    choices = (f"a {col} handwritten digit {word}", f"the number {word} written in {col}",
               f"a photo of the digit {word}", f"a {col} {word}")
    return choices[rng.integers(len(choices))]


# --- classes and their descriptions --------------------------------------------------------------

def class_name(colour: int, shape: int) -> str:
    return f"{COLOR_NAMES[colour]} {SHAPES[shape]}"


def base_new_split(seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Colour-shape classes split in halves; every colour and every shape has base and new classes
    (so a new class's words are all seen with base classes: only the combination is new)."""
    classes = [(c, s) for c in range(len(COLOR_NAMES)) for s in range(len(SHAPES))]
    for attempt in range(1000):
        order = np.random.default_rng([seed, attempt]).permutation(len(classes))
        base = sorted(classes[i] for i in order[:len(classes) // 2])
        new = sorted(classes[i] for i in order[len(classes) // 2:])
        if all({c for c, _ in part} == set(range(len(COLOR_NAMES))) and {s for _, s in part} == set(range(len(SHAPES)))
               for part in (base, new)):
            return base, new
    raise RuntimeError("no balanced base/new split found")  # pragma: no cover - 48 classes always have one


def named_classes(text: str) -> set[tuple[int, int]]:
    """The colour-shape classes a text names: a colour word (name or synonym) with a shape word
    (name, synonym, plural) or a shape's descriptive phrase ("tilted square" is a diamond, not a
    square). Used to check that held-out classes never reach pre-training captions."""
    text = f" {text} "
    shapes = set()
    for shape, phrase in SHAPE_PHRASES.items():  # phrases first: they contain other shapes' words
        if f" {phrase} " in text:
            shapes.add(SHAPES.index(shape))
            text = text.replace(f" {phrase} ", " ")
    words = set(text.split())
    for k, name in enumerate(SHAPES):
        forms = {name, *SHAPE_SYNONYMS[name]}
        if words & (forms | {PLURALS[f] for f in forms}):
            shapes.add(k)
    colours = {k for k, name in enumerate(COLOR_NAMES) if words & {name, *COLOR_SYNONYMS[name]}}
    return {(c, s) for c in colours for s in shapes}


def class_descriptions(colour: int, shape: int, *, seed: int = 0, distractors: int = 2,
                       others: Sequence[tuple[int, int]] | None = None) -> tuple[list[str], list[bool]]:
    """Natural-language descriptions of class (colour, shape) and which of them are distractors.

    A fixed, seeded list per class, as if an LLM had been asked once "describe a {class}": one
    sentence per texture (an image-aligned aggregator can pick the one that fits the image),
    synonym phrasings, a sentence about the shape's look, and `distractors` sentences that
    describe another class or nothing in the image. `others` (default: every class) are the
    classes a distractor may name: base-to-new training passes the base classes, so no
    description names a new class.
    """
    rng = np.random.default_rng([seed, colour, shape])
    col, name = COLOR_NAMES[colour], SHAPES[shape]
    col_syn, name_syn = COLOR_SYNONYMS[col][0], SHAPE_SYNONYMS[name][0]
    texts = [f"a {TEXTURE_WORDS[t][0]} {col} {name}" for t in TEXTURES]
    texts += [f"a {col_syn} {name_syn}", f"a photo of a {col} {name_syn}", f"a {name} that is {col_syn}",
              f"a {col} {SHAPE_PHRASES[name]}", f"something {col_syn} in the {' '.join(POSITIONS[rng.integers(9)])}"]
    flags = [False] * len(texts)
    for k in range(distractors):
        if k % 2 == 0 and others is None:  # another class: the kind of wrong sentence an LLM gets confidently wrong
            other_colour = (colour + 1 + rng.integers(len(COLOR_NAMES) - 1)) % len(COLOR_NAMES)
            other_shape = (shape + 1 + rng.integers(len(SHAPES) - 1)) % len(SHAPES)
            texts.append(f"a {COLOR_NAMES[other_colour]} {SHAPES[other_shape]}")
        elif k % 2 == 0:  # another class among `others`, differing in colour and shape
            options = [(c, s) for c, s in others if c != colour and s != shape]
            texts.append(f"a {class_name(*options[rng.integers(len(options))])}")
        else:
            texts.append(DISTRACTOR_SENTENCES[rng.integers(len(DISTRACTOR_SENTENCES))])
        flags.append(True)
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], [flags[i] for i in order]
