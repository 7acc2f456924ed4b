"""Texts as data (issue 13): a CSV's text column (``text COLUMN``), the data block's
``tokens`` (characters or words, lowercase, vocabulary caps, max_length), the vocabulary saved
with the weights and held against the data block, ``.txt`` files and lists of strings to
predict on, and bad inputs (empty texts, unseen characters, missing columns, broken UTF-8)."""
import csv
import warnings
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun.errors import DataError, DataWarning, DslError, UsageError, WeightsError
from dlrun.runtime.cli import main
from dlrun.runtime.data.tokens import OOV, PAD, Tokenizer

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "langid"  # beside the checkout

TEXTS = {
    "en": ["the cat sat on the mat", "a dog and a cat", "hello there, friend", "the sun is hot today"],
    "de": ["der hund und die katze", "guten tag, mein freund", "die sonne ist heiss", "das haus ist gross"],
}


def write_texts(path: Path, rows, header=("text", "language")):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def rows(repeat=3):
    return [(t, lang) for _ in range(repeat) for lang, ts in TEXTS.items() for t in ts]


def model_text(*, tokens="tokens chars lowercase", length=32, extra="", layers=None, test='"test.csv"'):
    layers = layers or "  dense 16 relu\n  dense 2 softmax\n"
    return (f'dlrun 1\nmodel t {{\n  data {{\n    train "train.csv"\n    test {test}\n    text text\n'
            f'    label language\n    {tokens}\n{extra}  }}\n  input {length}\n{layers}'
            f'  loss cross_entropy\n  optimizer adam lr=0.01\n  train epochs=3 batch=8 seed=1\n}}\n')


@pytest.fixture
def folder(tmp_path):
    write_texts(tmp_path / "train.csv", rows())
    write_texts(tmp_path / "test.csv", rows(1))
    return tmp_path


def fitted(folder, text=None, **kw):
    (folder / "t.net").write_text(text or model_text(**kw))
    m = dlrun.load(folder / "t.net")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        m.fit()
    return m


# -- reading ---------------------------------------------------------------------------------
def test_csv_text_column_keeps_quoted_commas_quotes_and_line_ends(tmp_path):
    texts = ['say "hi", then go', "two\nlines, one text", "ünïcödé ✓ 日本", ""]
    write_texts(tmp_path / "train.csv", [(t, "a" if i % 2 else "b") for i, t in enumerate(texts)] * 2)
    write_texts(tmp_path / "test.csv", [(texts[0], "a")])
    (tmp_path / "t.net").write_text(model_text(tokens="tokens chars", length=20))
    m = dlrun.load(tmp_path / "t.net")
    with pytest.warns(DataWarning) as rec:
        sp = m.splits()
    tok = sp.tokenizer
    assert set("".join(texts)) == set(tok.tokens)  # every character, line ends and quotes too
    x = sp.train.x
    assert x.dtype == np.float32 and x.shape == (8, 20)
    decoded = ["".join(tok.tokens[int(i) - 2] for i in row if i >= 2) for row in x[:4]]
    assert decoded == [t[:20] for t in texts]
    assert (x[3] == PAD).all()  # the empty text is all padding
    assert sp.vocab_size == len(tok.tokens) + 2 == sp.train.vocab_size
    messages = [str(w.message) for w in rec]
    train = [s for s in messages if "train.csv" in s]
    assert len(train) == 1 and "2 of 8 texts are empty (all padding)" in train[0]


def test_invalid_utf8_names_the_file_and_line(folder):
    (folder / "train.csv").write_bytes(b"text,language\nok,en\nbad \xff byte,de\n")
    (folder / "t.net").write_text(model_text())
    with pytest.raises(DataError, match=r"train\.csv: line 3, column 5: not UTF-8"):
        dlrun.load(folder / "t.net").splits()


def test_csv_without_the_text_column_names_the_file_and_its_columns(folder):
    write_texts(folder / "test.csv", rows(1), header=("sentence", "language"))
    (folder / "t.net").write_text(model_text())
    with pytest.raises(DataError, match=r"test\.csv: no text column named 'text'.*columns: sentence, language"):
        dlrun.load(folder / "t.net").splits()


def test_check_data_reads_the_text_columns(folder, capsys):
    (folder / "t.net").write_text(model_text())
    assert main(["check", "--data", str(folder / "t.net")]) == 0
    write_texts(folder / "test.csv", rows(1), header=("txt", "language"))
    assert main(["check", "--data", str(folder / "t.net")]) != 0
    err = capsys.readouterr()
    assert "t.net:6:5" in err.out + err.err and "no text column named 'text'" in err.out + err.err


# -- tokenizing ------------------------------------------------------------------------------
def test_words_lowercase_vocab_and_min_count():
    t = Tokenizer("words", True, 6, vocab=3, min_count=2).fit(["The cat, the hat.", "the cat", "a dog"])
    assert t.tokens == ["the", "cat"]  # seen twice or more (',' and '.' once: dropped)
    assert t.vocab_size == 4
    ids = t.encode(["THE DOG, cat"], np.float64, report=False)
    assert ids.tolist() == [[2, OOV, OOV, 3, 0, 0]]
    assert Tokenizer("words", False, 9, vocab=2).fit(["b b a a c c c", "d"]).tokens == ["c", "a"]
    assert Tokenizer("words", False, 4).fit(["A a"]).tokens == ["A", "a"]
    assert Tokenizer("chars", False, 4, min_count=2).fit(["aab"]).tokens == ["a"]


def test_vocabulary_is_counted_on_the_training_split_only(tmp_path):
    rs = rows()
    rs.append(("qqqq jjjj", "en"))  # 'q' and 'j' exist only in this row
    write_texts(tmp_path / "train.csv", rs)
    for seed in range(20):  # find a seed that holds that row out
        (tmp_path / "t.net").write_text(model_text(test="0.3").replace("seed=1", f"seed={seed}"))
        m = dlrun.load(tmp_path / "t.net")
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            sp = m.splits()
        if "j" not in sp.tokenizer.tokens:
            break
    else:
        pytest.fail("no seed held the row out")
    assert "q" not in sp.tokenizer.tokens
    held = [str(w.message) for w in rec if "(test split)" in str(w.message)]
    assert len(held) == 1 and "8 of" in held[0] and "not in the vocabulary" in held[0]
    assert (sp.test.x == OOV).sum() == 8


def test_truncation_and_oov_are_reported_once_per_source(folder):
    write_texts(folder / "test.csv", [("x" * 100, "en"), ("ÿÿÿ", "de"), ("the cat", "en")] * 5)
    (folder / "t.net").write_text(model_text(length=10))
    with pytest.warns(DataWarning) as rec:
        sp = dlrun.load(folder / "t.net").splits()
    test = [str(w.message) for w in rec if "test.csv" in str(w.message)]
    assert len(test) == 1, test
    assert "5 of 15 texts have more than 10 tokens and were cut to 10 (the longest has 100)" in test[0]
    assert "65 of 100 tokens" in test[0] and "id 1 (out of vocabulary)" in test[0]
    assert (sp.test.x[0] == OOV).all() and sp.test.x.shape == (15, 10)


# -- saved with the weights ------------------------------------------------------------------
def test_train_save_load_predict_strings_and_eval(folder):
    m = fitted(folder)
    w = folder / "w.npz"
    m.save(w)
    arrays = np.load(w)
    assert int(arrays["data.vocab_size"]) == m.vocab_size == len(arrays["data.vocab"]) + 2
    m2 = dlrun.load(folder / "t.net", weights=w)
    assert m2.tokenizer.tokens == m.tokenizer.tokens
    texts = ["the cat", "die katze", "", "完全に新しい"]
    with pytest.warns(DataWarning, match=r"x: 6 of 22 tokens .*out of vocabulary\); 1 of 4 texts are empty"):
        p = m2.predict(texts)
    assert p.shape == (4, 2) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert np.array_equal(p, m.predict(texts))
        assert list(m2.predict_classes(texts[:2])) == list(m.predict_classes(texts[:2]))
        assert set(m2.predict_classes(np.array(texts))) <= {"de", "en"}
        assert m2.evaluate() == m.evaluate()


def test_a_data_block_with_other_tokens_is_refused(folder):
    fitted(folder).save(folder / "w.npz")
    for tokens, diff in [("tokens chars", "lowercase: true in the weights, false in the data block"),
                         ("tokens words lowercase", "unit: 'chars' in the weights, 'words' in the data block"),
                         ("tokens chars lowercase vocab=10", "vocab: none (no cap) in the weights, 10 in")]:
        (folder / "o.net").write_text(model_text(tokens=tokens))
        with pytest.raises(WeightsError, match="tokens differ") as err:
            dlrun.load(folder / "o.net", weights=folder / "w.npz")
        assert diff in str(err.value)
    numeric = model_text().replace("    text text\n", "").replace("    tokens chars lowercase\n", "") \
        .replace('"train.csv"', '"n.npz"').replace('"test.csv"', "0.2").replace("    label language\n", "")
    np.savez(folder / "n.npz", x=np.zeros((10, 32)), y=np.arange(10) % 2)
    (folder / "n.net").write_text(numeric)
    with pytest.raises(WeightsError, match="trained on texts .*names no text column"):
        dlrun.load(folder / "n.net", weights=folder / "w.npz")
    nm = dlrun.load(folder / "n.net")
    nm.fit()
    nm.save(folder / "nw.npz")
    with pytest.raises(WeightsError, match="reads the text column 'text', but .*trained\\s+on numbers"):
        dlrun.load(folder / "t.net", weights=folder / "nw.npz")


def test_predict_before_fit_is_a_usage_error(folder):
    (folder / "t.net").write_text(model_text())
    with pytest.raises(UsageError, match="reads texts: its vocabulary comes from fit"):
        dlrun.load(folder / "t.net").predict(["hello"])


def test_cli_predict_on_txt_and_csv(folder, capsys):
    m = fitted(folder)
    m.save(folder / "w.npz")
    (folder / "in.txt").write_text("the cat sat\n\n" + "long " * 30 + "\n", encoding="utf-8")
    args = ["predict", str(folder / "t.net"), "--weights", str(folder / "w.npz")]
    assert main(args + ["--input", str(folder / "in.txt")]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0] == "text,label" and len(lines) == 4
    assert lines[1].startswith("the cat sat,") and lines[2].startswith(",")
    assert lines[3].startswith("long long") and "...," in lines[3] and len(lines[3].split(",")[0]) == 60
    assert out.err.count("warning:") == 1 and "1 of 3 texts are empty" in out.err
    write_texts(folder / "p.csv", [("hello, \"friend\"", "en"), ("die katze", "de")])
    assert main(args + ["--input", str(folder / "p.csv"), "--proba"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "text,de,en" and lines[1].startswith('"hello, ""friend""",') and len(lines) == 3
    write_texts(folder / "bad.csv", [("x", "y")], header=("a", "b"))
    assert main(args + ["--input", str(folder / "bad.csv")]) == 2
    assert "bad.csv: no text column named 'text'; columns: a, b" in capsys.readouterr().err
    (folder / "bad.txt").write_bytes(b"fine\nbro\xc3ken\n")
    assert main(args + ["--input", str(folder / "bad.txt")]) == 2
    assert "bad.txt: line 2, column 4: not valid UTF-8" in capsys.readouterr().err
    np.save(folder / "x.npy", np.zeros((2, 32)))
    assert main(args + ["--input", str(folder / "x.npy")]) == 2
    assert "the model reads texts: expected a CSV file with the text column" in capsys.readouterr().err


def test_a_txt_file_is_no_input_for_a_numeric_model(tmp_path):
    np.savez(tmp_path / "n.npz", x=np.zeros((10, 4)), y=np.arange(10) % 2)
    (tmp_path / "n.net").write_text('dlrun 1\nmodel n {\n  data {\n    train "n.npz"\n  }\n  input 4\n'
                                    '  dense 2 softmax\n  loss cross_entropy\n  optimizer adam\n}\n')
    m = dlrun.load(tmp_path / "n.net")
    m.fit()
    (tmp_path / "in.txt").write_text("1 2 3 4\n")
    with pytest.raises(DataError, match="a .txt file holds texts, but the model reads numbers"):
        m.predict(tmp_path / "in.txt")


def test_the_checker_refuses_a_txt_file_as_a_source(tmp_path):
    (tmp_path / "t.net").write_text(model_text().replace('"train.csv"', '"train.txt"'))
    with pytest.raises(DslError, match="is a text file to predict on"):
        dlrun.load(tmp_path / "t.net")


def test_fmt_round_trip_of_the_text_statements():
    from dlrun.dsl import parse
    from dlrun.dsl.fmt import format_model

    m = parse(model_text(tokens="tokens words lowercase max_length=32 vocab=100 min_count=2"))
    text = format_model(m)
    assert '    text "text"\n    tokens words lowercase max_length=32 vocab=100 min_count=2\n' in text
    again = parse(text)
    assert again.data.tokens.__dict__.keys() == m.data.tokens.__dict__.keys()
    assert (again.data.text, again.data.tokens.vocab, again.data.tokens.min_count) == ("text", 100, 2)
    plain = parse(model_text(tokens="").replace("    \n", ""))
    assert plain.data.tokens.unit == "chars" and plain.data.tokens.max_length is None


# -- with an embedding -----------------------------------------------------------------------
EMBED = "  embedding 8 vocab=42\n  conv1d 8 3 relu\n  global_maxpool\n  dense 2 softmax\n"


def test_an_embedding_model_trains_on_texts_and_predicts_strings(folder):
    m = fitted(folder, tokens="tokens chars lowercase vocab=40", layers=EMBED)
    assert m.vocab_size <= 42
    m.save(folder / "w.npz")
    m2 = dlrun.load(folder / "t.net", weights=folder / "w.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert m2.evaluate()["accuracy"] >= 0.5
        assert np.array_equal(m2.predict(["der hund", "the dog", ""]), m.predict(["der hund", "the dog", ""]))


def test_an_embedding_without_vocab_takes_the_data_vocabulary_and_keeps_it_with_the_weights(folder):
    m = fitted(folder, tokens="tokens chars lowercase vocab=40", layers=EMBED.replace(" vocab=42", ""))
    emb = m.network.layers[1]
    assert emb.params["w"].shape == (m.vocab_size, 8) and m.vocab_size <= 42
    assert f"{m.vocab_size * 8:,}" in m.summary()
    m.save(folder / "w.npz")
    # the weights settle the size without reading the data again; the same network as training's
    m2 = dlrun.load(folder / "t.net", weights=folder / "w.npz")
    assert m2.network.layers[1].params["w"].shape == emb.params["w"].shape
    texts = ["der hund", "the dog", "le chat"]
    assert np.array_equal(m2.predict(texts), m.predict(texts))
    # the same file with vocab= written out reads the same weights (the same architecture)
    (folder / "v.net").write_text(model_text(tokens="tokens chars lowercase vocab=40",
                                             layers=EMBED.replace("vocab=42", f"vocab={m.vocab_size}")))
    m3 = dlrun.load(folder / "v.net", weights=folder / "w.npz")
    assert np.array_equal(m3.predict(texts), m.predict(texts))


def test_a_run_whose_embedding_takes_the_data_vocabulary_resumes_bit_exactly(folder):
    text = model_text(tokens="tokens chars lowercase vocab=40", layers=EMBED.replace(" vocab=42", ""))
    whole = fitted(folder, text)
    (folder / "t.net").write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dlrun.load(folder / "t.net").fit(epochs=2, checkpoint=folder / "ck")
        again = dlrun.load(folder / "t.net")
        again.fit(checkpoint=folder / "ck", resume=True)
    assert again.network.store.flat.tobytes() == whole.network.store.flat.tobytes()


def test_weights_without_a_vocabulary_do_not_settle_an_embedding(folder):
    (folder / "t.net").write_text(model_text(layers=EMBED.replace(" vocab=42", "")))
    numbers = dlrun.loads(model_text(layers=EMBED).split("  data {")[0] + "  input 32\n" + EMBED
                          + "  loss cross_entropy\n  optimizer adam\n}\n")
    x = np.random.default_rng(0).integers(0, 42, (16, 32)).astype(np.float32)
    numbers.fit(x, np.arange(16) % 2, epochs=1)
    numbers.save(folder / "n.npz")
    m = dlrun.load(folder / "t.net")
    with pytest.raises(WeightsError, match="takes its vocabulary size from the data's tokens, but these data "
                                           "have no token ids"):
        m.load_weights(folder / "n.npz")
    with pytest.raises(dlrun.UsageError, match="takes its vocabulary size from the data"):
        m.network   # the failed load left the model as it was


def test_an_embedding_smaller_than_the_vocabulary_is_refused(folder):
    (folder / "t.net").write_text(model_text(layers=EMBED.replace("vocab=42", "vocab=10")))
    m = dlrun.load(folder / "t.net")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match=r"t\.net:\d+: 'embedding' has vocab=10 rows, but the data's "
                                            r"vocabulary has \d+ ids .*tokens \.\.\. vocab=8"):
            m.fit()


@pytest.mark.skipif(not (SHARED / "train.csv").exists(), reason="../shared/data/langid not present")
def test_langid_reads_through_the_pipeline(tmp_path):
    for name in ("train.csv", "test.csv"):
        (tmp_path / name).symlink_to(SHARED / name)
    (tmp_path / "t.net").write_text(model_text(length=200, tokens="tokens chars lowercase vocab=5000")
                                    .replace("dense 2 softmax", "dense 8 softmax").replace("epochs=3", "epochs=1"))
    m = dlrun.load(tmp_path / "t.net")
    with pytest.warns(DataWarning, match="cut to 200"):
        sp = m.splits()
    assert sp.train.x.shape == (7839, 200) and len(sp.class_names) == 8
    assert 50 < sp.vocab_size < 5002 and sp.test.x.max() < sp.vocab_size
