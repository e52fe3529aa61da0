"""``ssl-siam search``: the tiles of an embedding index most like examples, or ``--eval`` of encoders' retrieval."""

from __future__ import annotations

import argparse

from ssl_siam.cli.common import FRACTION, NON_NEGATIVE, POSITIVE, check_output, number

NAME = "search"
HELP = "find the tiles of an embedding index most like examples (FAISS), or --eval retrieval on labelled folders"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--index", help="an index folder written by ssl-siam embed")
    what.add_argument("--eval", metavar="LABELLED_FOLDER",
                      help="evaluate --encoder(s) instead: precision@k and mAP on <class>/* images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--query", action="append", default=[], metavar="FILE",
                        help="a tile image, embedded with the index's encoder (its central tile-sized window)")
    parser.add_argument("--lonlat", action="append", default=[], metavar="LON,LAT",
                        help="the indexed tile containing this point (degrees)")
    parser.add_argument("--id", action="append", default=[], metavar="N", help="an index tile id")
    parser.add_argument("--positive", nargs="+", action="extend", default=[], metavar="EXAMPLE",
                        help="more like these: index ids, LON,LAT points or tile files")
    parser.add_argument("--negative", nargs="+", action="extend", default=[], metavar="EXAMPLE",
                        help="not like these (default with several positives: a random background of the index)")
    parser.add_argument("--k", type=POSITIVE, default=10, help="hits to return; with --eval, the k of precision@k")
    parser.add_argument("--device", default="cpu", help="where tile files (and --eval images) are embedded")
    parser.add_argument("--exact-below", type=NON_NEGATIVE,
                        help="indexes with fewer vectors are searched exactly (default 100000), larger ones by IVF")
    parser.add_argument("--nlist", type=POSITIVE, help="IVF cells (default 4·√N)")
    parser.add_argument("--nprobe", type=POSITIVE, help="IVF cells visited per query (default 32)")
    parser.add_argument("--c", type=number(float, 1e-12), default=1.0,
                        help="inverse L2 penalty of the positive / negative classifier (scikit-learn's C)")
    parser.add_argument("--background", type=POSITIVE, help="random index tiles as negatives (default 1000)")
    parser.add_argument("--seed", type=NON_NEGATIVE, default=0, help="background draw")
    parser.add_argument("--map-scenes", type=NON_NEGATIVE,
                        help="scenes of georeferenced hits drawn as maps beside the thumbnails (default 2; 0: none)")
    parser.add_argument("--encoder", action="append", default=[],
                        help="--eval: a run dir, random:<timm name> or timm:<name>=<weights>; repeatable")
    parser.add_argument("--seeds", type=NON_NEGATIVE, nargs="+", default=[0, 1, 2], help="--eval: query subsets")
    parser.add_argument("--query-fraction", type=FRACTION, default=0.25,
                        help="--eval: fraction of each class used as queries per seed")
    parser.add_argument("--crop-size", type=POSITIVE, default=64, help="--eval: image side given to the encoder")
    parser.add_argument("--batch-size", type=POSITIVE, default=64, help="--eval: images per forward")


def run(args: argparse.Namespace) -> int:
    from ssl_siam.core.errors import UserError

    examples = args.query or args.lonlat or args.id or args.positive or args.negative
    if args.eval and examples:
        raise UserError("--eval evaluates --encoder(s) on a labelled folder: it takes no --query, --lonlat, --id, "
                        "--positive or --negative")
    if args.index and args.encoder:
        raise UserError(f"--encoder {args.encoder[0]}: --index is searched with its own encoder (index.json); "
                        "--encoder is for --eval")
    check_output(args.out, "--out")
    return _evaluate(args) if args.eval else _search(args)


def _search(args: argparse.Namespace) -> int:
    from ssl_siam.search.knn import SearchParams
    from ssl_siam.search.run import run_search
    from ssl_siam.search.scene_map import scene_label

    given = {k: v for k, v in (("exact_below", args.exact_below), ("nlist", args.nlist), ("nprobe", args.nprobe))
             if v is not None}
    positives = ([("--query", q, "file") for q in args.query] + [("--lonlat", p, "lonlat") for p in args.lonlat]
                 + [("--id", i, "id") for i in args.id] + [("--positive", p, None) for p in args.positive])
    extra = {k: v for k, v in (("background_size", args.background), ("map_scenes", args.map_scenes))
             if v is not None}
    result = run_search(args.index, args.out, positives, [("--negative", n, None) for n in args.negative], k=args.k,
                        params=SearchParams(**given), c=args.c, device=args.device, seed=args.seed, **extra)
    print(f"{result.mode} search, {result.positives} positive(s), {result.negatives} negative(s), "
          f"{result.index_kind}:")
    for hit in result.hits:
        print(f"  #{hit['rank']:<3} id {hit['id']:<8} score {hit['score']:.4f}  {scene_label(hit['scene'])} "
              f"row {hit['row']} col {hit['col']}")
    print(f"written to {args.out}/hits.geojson, hits.csv and contact_sheet.png")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ssl_siam.search.evaluate import eval_tables, run_search_eval

    summary = run_search_eval(args.eval, args.encoder, args.out, k=args.k, seeds=args.seeds,
                              query_fraction=args.query_fraction, crop_size=args.crop_size,
                              batch_size=args.batch_size, device=args.device)
    print("\n".join(eval_tables(summary)))
    print(f"written to {args.out}/search_eval.json and search_eval.md")
    return 0
