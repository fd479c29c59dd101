"""Emotion of chat messages: the online emotion model against the keyword-only baseline.

    python benchmarks/emotion.py [--size 6000] [--seed 7] [--label-shares 1.0,0.2] [--write-docs]

1. A seeded corpus of ``--size`` customer messages in Chinese, English and both
   (:func:`streams.tools.traffic.conversations.conversation_corpus`), with planted emotions.
2. In the same run, macro F1 per language (as :func:`models.emotion.language_of` reads it) and over
   all of them, of:

   * the keyword-only baseline (:func:`models.emotion.keyword_emotion`);
   * the lexicon with negation and intensity, no corrections (an :class:`EmotionModel` that learned
     nothing);
   * the online model by progressive validation: the messages arrive in order, each is predicted when
     it arrives, and the correction of a share of them (each of ``--label-shares``) arrives
     ``--label-delay`` messages later on the labels topic and is learned then; with the default
     ``SoftmaxRegression`` and, for the first share, River's naive Bayes classifiers in its place;
   * after N corrections (each of ``--corrections``): the model learns the first N messages, and is
     scored on the last ``--holdout`` messages, which it never learns;
   * on unseen templates: the corpus' messages are written from sentence templates, so a message
     scored above may share its template with one learned. Here the model learns messages of half
     the templates and is scored on ``--holdout`` messages of the other half (the greetings and
     second sentences are shared): how far corrections carry to other wordings.
3. Cost: µs of CPU per prediction (``predict_proba_one``, median of ``--repeats`` passes over the
   corpus) of each, after it learned.

``--write-docs`` puts the figures into docs/benchmarks.md between the emotion-benchmark markers.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from river import naive_bayes  # noqa: E402

from benchmarks.readme import publish  # noqa: E402
from models.emotion import EMOTIONS, EmotionModel, keyword_emotion  # noqa: E402
from streams.tools.traffic.conversations import LabelledMessage, conversation_corpus  # noqa: E402

MARKERS = ("<!-- emotion-benchmark:start -->", "<!-- emotion-benchmark:end -->")
LANGUAGES = ("zh", "en", "mixed")


def macro_f1(truth: list[str], predicted: list[str]) -> float:
    """The mean over :data:`EMOTIONS` present in ``truth`` or ``predicted`` of each one's F1."""
    scores = []
    for emotion in EMOTIONS:
        tp = sum(t == p == emotion for t, p in zip(truth, predicted, strict=True))
        fp = sum(p == emotion != t for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == emotion != p for t, p in zip(truth, predicted, strict=True))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def by_language(messages: list[LabelledMessage], predicted: list[str]) -> dict[str, float]:
    """Macro F1 per language and over all (``all``)."""
    figures = {}
    for language in (*LANGUAGES, "all"):
        pairs = [
            (m.emotion, p)
            for m, p in zip(messages, predicted, strict=True)
            if language in ("all", m.language)
        ]
        figures[language] = macro_f1([t for t, _ in pairs], [p for _, p in pairs])
    return figures


def progressive(
    messages: list[LabelledMessage], model: EmotionModel, label_share: float, delay: int, seed: int
) -> list[str]:
    """Predict each message as it arrives; learn the corrections of ``label_share`` of them ``delay``
    messages later."""
    rng = random.Random(seed)
    pending: list[tuple[int, LabelledMessage]] = []  # (due at message index, message)
    predicted = []
    for i, message in enumerate(messages):
        while pending and pending[0][0] <= i:
            model.learn_one(pending[0][1].text, pending[0][1].emotion)
            pending.pop(0)
        predicted.append(model.predict_one(message.text))
        if rng.random() < label_share:
            pending.append((i + delay, message))
    return predicted


def microseconds(predict: Callable[[str], object], texts: list[str], repeats: int) -> float:
    """Median over ``repeats`` passes of the µs per call of ``predict`` on ``texts``, in CPU time of
    this process (the machine's other work does not count)."""
    passes = []
    for _ in range(repeats):
        start = time.process_time()
        for text in texts:
            predict(text)
        passes.append((time.process_time() - start) / len(texts) * 1e6)
    return statistics.median(passes)


def classifiers() -> dict[str, Callable[[], EmotionModel]]:
    return {
        "SoftmaxRegression": EmotionModel,
        "MultinomialNB": lambda: EmotionModel(classifier=naive_bayes.MultinomialNB(alpha=0.1)),
        "ComplementNB": lambda: EmotionModel(classifier=naive_bayes.ComplementNB(alpha=0.1)),
    }


def learned(messages: list[LabelledMessage]) -> EmotionModel:
    model = EmotionModel()
    for message in messages:
        model.learn_one(message.text, message.emotion)
    return model


def half(template: str) -> bool:
    """The half of the templates the unseen-templates model learns from (the same in every run)."""
    return zlib.crc32(template.encode()) % 2 == 0


Row = tuple[str, str, dict[str, float], float]  # the messages scored, what, F1 by language, µs/prediction


def run(args: argparse.Namespace) -> str:
    started = time.perf_counter()
    corpus = conversation_corpus(args.seed, args.size)
    holdout, learnable = corpus[-args.holdout :], corpus[: -args.holdout]
    # Unseen templates: learn from messages of half the templates, score messages of the other half.
    seen = conversation_corpus(args.seed + 1, len(learnable), templates=half)
    unseen = conversation_corpus(args.seed + 2, args.holdout, templates=lambda t: not half(t))
    sets = {"corpus": corpus, "held-out": holdout, "unseen": unseen}
    rows: list[Row] = []

    def score(scored: str, what: str, model: EmotionModel | None, predicted: list[str] | None = None) -> None:
        messages = sets[scored]
        texts = [m.text for m in messages]
        if model is None:
            predicted = predicted or [keyword_emotion(t) for t in texts]
            us = microseconds(keyword_emotion, texts, args.repeats)
        else:
            predicted = predicted or [model.predict_one(t) for t in texts]
            us = microseconds(model.predict_proba_one, texts, args.repeats)
        rows.append((scored, what, by_language(messages, predicted), us))

    score("corpus", "keyword baseline", None)
    score("corpus", "lexicon (negation, intensity), no corrections", EmotionModel())
    for share in args.label_shares:
        for name, make in classifiers().items():
            if name != "SoftmaxRegression" and share != args.label_shares[0]:
                continue
            model = make()
            predicted = progressive(corpus, model, share, args.label_delay, args.seed)
            what = f"online, progressive, {share:.0%} corrected: {name}"
            score("corpus", what if name != "SoftmaxRegression" else what + " (the model)", model, predicted)
    score("held-out", "keyword baseline", None)
    for n in args.corrections:
        if n <= len(learnable):
            score("held-out", f"after {n:,} corrections", learned(learnable[:n]))
    score("unseen", "keyword baseline", None)
    score("unseen", "lexicon, no corrections", EmotionModel())
    score("unseen", f"after {len(seen):,} corrections of the other templates", learned(seen))
    return report(args, corpus, rows, time.perf_counter() - started)


def report(args: argparse.Namespace, corpus: list[LabelledMessage], rows: list[Row], seconds: float) -> str:
    languages = Counter(m.language for m in corpus)
    emotions = Counter(m.emotion for m in corpus)
    baselines = {scored: (figures, us) for scored, what, figures, us in rows if what == "keyword baseline"}
    corrections = ",".join(str(n) for n in args.corrections)
    shares = ",".join(str(share) for share in args.label_shares)
    command = (
        f"python benchmarks/emotion.py --size {args.size} --seed {args.seed} --label-shares {shares}"
        f" --label-delay {args.label_delay} --holdout {args.holdout} --corrections {corrections}"
    )
    by_language = ", ".join(f"{lang} {languages[lang]:,}" for lang in LANGUAGES)
    by_emotion = ", ".join(f"{e} {emotions[e]:,}" for e in EMOTIONS)
    titles = {
        "corpus": f"all {len(corpus):,} messages",
        "held-out": f"the last {args.holdout:,}, never learned",
        "unseen": f"{args.holdout:,} messages of templates never learned",
    }
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on 2 cores, Python {platform.python_version()}:"
        f" `{command}` ({seconds:.0f} s).",
        "",
        f"Corpus: {len(corpus):,} messages ({by_language}); {by_emotion};"
        f" {len({m.text for m in corpus}):,} distinct.",
        "",
        "Macro F1 per language and over all, its ratio to the keyword baseline's on the same messages,"
        " and µs of CPU per prediction:",
        "",
        "| scored on | model | zh | en | mixed | all | vs. keywords | µs/message |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scored, what, figures, us in rows:
        f1 = " | ".join(f"{figures[language]:.3f}" for language in (*LANGUAGES, "all"))
        ratio = figures["all"] / baselines[scored][0]["all"]
        lines.append(f"| {titles[scored]} | {what} | {f1} | {ratio:.2f} | {us:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--label-shares",
        type=lambda value: [float(share) for share in value.split(",")],
        default=[1.0, 0.2],
        help="comma-separated shares of the messages corrected, a progressive run each",
    )
    parser.add_argument(
        "--label-delay", type=int, default=20, help="messages between a message and its correction"
    )
    parser.add_argument("--holdout", type=int, default=2000, help="last messages, scored and never learned")
    parser.add_argument(
        "--corrections",
        type=lambda value: [int(n) for n in value.split(",")],
        default=[100, 500, 4000],
        help="comma-separated numbers of corrections learned before scoring the held-out messages",
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes over the corpus timed per model")
    parser.add_argument("--write-docs", action="store_true", help="put the figures into docs/benchmarks.md")
    args = parser.parse_args()
    publish(MARKERS, run(args), args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
