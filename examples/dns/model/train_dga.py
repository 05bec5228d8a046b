#!/usr/bin/env python3
"""Train the DGA model the dns-dga analyzer scores query names with.

The labelled set is generated here, so the repository ships no third-party data:
  benign: names built the way people name things -- dictionary words (the list below),
          compounds of two or three words, a word plus a short number, some hyphens and
          well-known brand-like abbreviations;
  dga:    the lexical families seen in malware -- uniformly random letters, letters and
          digits, hex strings, consonant-heavy strings (Locky/Necurs/Ramnit-like lengths
          8-32), and pseudo-pronounceable random syllables (the hardest family).

Features (the same code in Lua: examples/lib/dga_features.lua -- keep them in step):
  1 length of the label          2 Shannon entropy (bits/char)
  3 digit fraction               4 vowel fraction of letters
  5 longest consonant run / len  6 distinct chars / len
  7 fraction of bigrams in COMMON_BIGRAMS   8 hyphen present (0/1)

Writes model/dga-logreg.txt (ML.LOGREG.SET arguments: intercept then coefficients),
and prints precision/recall on a held-out 25 %. Usage:
    python3 examples/dns/model/train_dga.py [--seed N] [--out DIR]
"""
import argparse
import math
import os
import random
import re
import sys

WORDS = """
about above access account action active adobe advance agent air alpha amazon analytics
anchor android apple apply archive area arena army art asset atlas audio auth auto avenue
bank base basket bay beach bear beauty best beta bike bird black blog blue board boat body
book boost box brain brand bread bridge bright broad brown budget build bus business buy
cable cafe call camera camp capital car card care cargo case cash castle cat center chain
chair champion change channel chat cheap check chef chess child city class clean clear
click climate clinic cloud club coach coast code coffee coin college color comfort common
community company compute connect content control cook cool copy core corner cost country
craft cream credit crowd cube culture cup data date dawn day deal delta dental design
desk dev device diamond digital direct discover doctor dog door dragon draw dream drive
drop earth east easy echo edge edu electric elite email energy engine enter event expert
express face fact factory fair family farm fashion fast field file film finance find fire
first fish fit flag flash fleet flight flow flower fly focus food force forest form forum
fox frame free fresh friend front fruit fuel fun fund future galaxy game garden gate gear
general gift glass global gold golf good grand graph green grid group grow guard guide
hair hand happy harbor health heart help hero high hill home honey horizon host hot hotel
house hub idea image impact info ink insight inside island jet job join journal joy jump
key kids king kitchen lab lake land laser law leader learn legal level life light line
link lion list live local lock logic loop love lucky machine magic mail main maker map
market master media medical meet mega mesh metal metro micro mind mobile money monitor
moon motion motor mountain movie music nano nation native net network news next night
node north note nova ocean office one online open orange orbit order outdoor pace pack
page paint palm paper park partner party pass path pay peak pen people phone photo pilot
pixel place planet plant play plus point polar policy portal post power press prime pro
product project proxy pulse pure quest quick radio rain rapid reach real red report rest
ride ring river road robot rock room root route royal run safe sail sale salt school
science score screen sea search secure seed sense server service share shell shield ship
shop show side sign silver simple site sky smart snow social soft solar solid sound
source space spark speed sport spring square stack star start station stock stone store
storm story stream street studio style sun super support surf swift system table talent
task team tech terra test text thunder ticket tiger time today tool top tower town trade
train travel tree trend trip true trust tube union unit up update urban user valley value
vector video view village vision voice wave way weather web west white wide wind window
wine winter wire wise wolf wood word work world yard yellow young zen zone
""".split()
ABBREV = ["ibm", "bbc", "cnn", "hp", "att", "ups", "nasa", "aws", "gcp", "msn", "aol", "cdn",
          "api", "img", "static", "assets", "svc", "prod", "corp", "intl", "usa", "uk", "eu",
          "tv", "fm", "hq", "ai", "io", "app", "apps", "my", "go", "get", "the", "i", "e"]
CONSONANTS = "bcdfghjklmnpqrstvwxz"
VOWELS = "aeiou"
# one list for both languages: read it from the Lua module
_LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib", "dga_features.lua")
COMMON_BIGRAMS = set(re.search(r"\[\[(.*?)\]\]", open(_LUA).read(), re.S).group(1).split())


def features(label):
    n = len(label)
    if n == 0:
        return [0.0] * 8
    counts = {}
    for ch in label:
        counts[ch] = counts.get(ch, 0) + 1
    entropy = -sum(c / n * math.log(c / n, 2) for c in counts.values())
    digits = sum(1 for ch in label if ch.isdigit())
    letters = sum(1 for ch in label if "a" <= ch <= "z")
    vowels = sum(1 for ch in label if ch in VOWELS)
    run = best = 0
    for ch in label:
        if ch in CONSONANTS:
            run += 1
            best = max(best, run)
        else:
            run = 0
    pairs = [label[i:i + 2] for i in range(n - 1)]
    common = sum(1 for p in pairs if p in COMMON_BIGRAMS) / len(pairs) if pairs else 0.0
    return [float(n), entropy, digits / n, vowels / letters if letters else 0.0, best / n,
            len(counts) / n, common, 1.0 if "-" in label else 0.0]


def benign(rng):
    r = rng.random()
    if r < 0.25:
        name = rng.choice(WORDS)
    elif r < 0.65:
        name = rng.choice(WORDS) + rng.choice(WORDS)
    elif r < 0.75:
        name = rng.choice(WORDS) + rng.choice(WORDS) + rng.choice(WORDS)
    elif r < 0.83:
        name = rng.choice(WORDS) + "-" + rng.choice(WORDS)
    elif r < 0.91:
        name = rng.choice(ABBREV) + rng.choice(WORDS)
    elif r < 0.96:
        name = rng.choice(WORDS) + str(rng.randint(1, 365))
    else:
        name = rng.choice(WORDS) + rng.choice(ABBREV)
    return name


def dga(rng):
    r = rng.random()
    n = rng.randint(8, 32)
    if r < 0.3:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    if r < 0.55:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))
    if r < 0.65:
        return "".join(rng.choice("0123456789abcdef") for _ in range(rng.randint(12, 32)))
    if r < 0.8:
        return "".join(rng.choice(CONSONANTS + "ae") for _ in range(n))
    # pseudo-pronounceable: random consonant-vowel syllables
    out = ""
    while len(out) < n:
        out += rng.choice(CONSONANTS) + rng.choice(VOWELS) + (rng.choice(CONSONANTS) if rng.random() < 0.4 else "")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--samples", type=int, default=20000, help="per class")
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_score, recall_score
    from sklearn.model_selection import train_test_split

    rng = random.Random(args.seed)
    names = [benign(rng) for _ in range(args.samples)] + [dga(rng) for _ in range(args.samples)]
    labels = [0] * args.samples + [1] * args.samples
    X = [features(s) for s in names]
    Xtr, Xte, ytr, yte, _ntr, nte = train_test_split(X, labels, names, test_size=0.25,
                                                     random_state=args.seed, stratify=labels)
    model = LogisticRegression(max_iter=5000, C=1.0)
    model.fit(Xtr, ytr)
    pred = model.predict(Xte)
    p, r = precision_score(yte, pred), recall_score(yte, pred)
    path = os.path.join(args.out, "dga-logreg.txt")
    with open(path, "w") as f:
        f.write(" ".join(repr(float(v)) for v in [model.intercept_[0], *model.coef_[0]]) + "\n")
    print(f"held-out {len(yte)} names: precision {p:.3f} recall {r:.3f} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
