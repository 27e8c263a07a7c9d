"""Deterministic, realistic-looking variant records for a simulated case.

A case's variants depend only on its name, so a test (or a DAG under development) sees the same
candidates every time it asks, across restarts and runs. Positions fall inside each gene's real
GRCh38 span so downstream code that checks coordinates against a gene panel behaves as with real
data; the variants themselves are invented and mean nothing clinically.
"""

from __future__ import annotations

import random
from typing import Any

# gene, chromosome, GRCh38 start, end, RefSeq transcript, mode of inheritance
_GENES: tuple[tuple[str, str, int, int, str, str], ...] = (
    ("SCN1A", "chr2", 165_984_641, 166_149_161, "NM_001165963.4", "AD"),
    ("SCN2A", "chr2", 165_194_993, 165_392_310, "NM_001040142.2", "AD"),
    ("KCNQ2", "chr20", 63_400_208, 63_472_677, "NM_172107.4", "AD"),
    ("CDKL5", "chrX", 18_425_608, 18_653_629, "NM_001323289.2", "XLD"),
    ("STXBP1", "chr9", 127_579_370, 127_696_027, "NM_003165.6", "AD"),
    ("MECP2", "chrX", 154_021_573, 154_097_717, "NM_004992.4", "XLD"),
    ("PCDH19", "chrX", 100_291_644, 100_410_273, "NM_001184880.2", "XL"),
    ("SLC2A1", "chr1", 42_925_375, 42_958_893, "NM_006516.4", "AD"),
    ("GRIN2A", "chr16", 9_753_404, 10_182_908, "NM_000833.5", "AD"),
    ("TSC2", "chr16", 2_047_985, 2_089_491, "NM_000548.5", "AD"),
    ("PTEN", "chr10", 87_863_113, 87_971_930, "NM_000314.8", "AD"),
    ("CFTR", "chr7", 117_480_025, 117_668_665, "NM_000492.4", "AR"),
    ("GJB2", "chr13", 20_187_470, 20_192_938, "NM_004004.6", "AR"),
    ("SMN1", "chr5", 70_924_941, 70_953_015, "NM_000344.4", "AR"),
    ("DMD", "chrX", 31_097_677, 33_339_441, "NM_004006.3", "XLR"),
    ("FBN1", "chr15", 48_408_313, 48_645_709, "NM_000138.5", "AD"),
    ("MYH7", "chr14", 23_412_740, 23_435_660, "NM_000257.4", "AD"),
    ("BRCA1", "chr17", 43_044_295, 43_125_483, "NM_007294.4", "AD"),
)
_BASES = "ACGT"
_AMINO_ACIDS = (
    "Ala",
    "Arg",
    "Asn",
    "Asp",
    "Cys",
    "Gln",
    "Glu",
    "Gly",
    "His",
    "Ile",
    "Leu",
    "Lys",
    "Met",
    "Phe",
    "Pro",
    "Ser",
    "Thr",
    "Trp",
    "Tyr",
    "Val",
)
# ACMG class, pathogenicity score range, relative weight (most candidates are VUS)
_CLASSES: tuple[tuple[str, float, float, int], ...] = (
    ("Pathogenic", 0.9, 1.0, 1),
    ("Likely pathogenic", 0.7, 0.9, 2),
    ("Uncertain significance", 0.3, 0.7, 6),
    ("Likely benign", 0.1, 0.3, 3),
    ("Benign", 0.0, 0.1, 2),
)
_EFFECTS = (
    "missense_variant",
    "synonymous_variant",
    "stop_gained",
    "splice_region_variant",
    "frameshift_variant",
)

MIN_VARIANTS = 5
MAX_VARIANTS = 40


def _variant(rng: random.Random, index: int) -> dict[str, Any]:
    gene, chrom, start, end, transcript, inheritance = rng.choice(_GENES)
    pos = rng.randint(start, end)
    ref = rng.choice(_BASES)
    effect = rng.choice(_EFFECTS)
    if effect == "frameshift_variant":
        alt = ref + "".join(rng.choice(_BASES) for _ in range(rng.choice((1, 2, 4))))
    else:
        alt = rng.choice([b for b in _BASES if b != ref])
    cdna = rng.randint(10, 6000)
    codon = (cdna + 2) // 3
    aa_ref = rng.choice(_AMINO_ACIDS)
    if effect == "synonymous_variant":
        hgvs_p = f"p.({aa_ref}{codon}=)"
    elif effect == "stop_gained":
        hgvs_p = f"p.({aa_ref}{codon}Ter)"
    elif effect == "frameshift_variant":
        hgvs_p = f"p.({aa_ref}{codon}fs)"
    elif effect == "splice_region_variant":
        hgvs_p = "p.?"
    else:
        hgvs_p = f"p.({aa_ref}{codon}{rng.choice([a for a in _AMINO_ACIDS if a != aa_ref])})"
    hgvs_c = f"c.{cdna}_{cdna + 1}ins{alt[1:]}" if len(alt) > 1 else f"c.{cdna}{ref}>{alt}"
    acmg, low, high, _ = rng.choices(_CLASSES, weights=[c[3] for c in _CLASSES])[0]
    hemizygous_possible = chrom == "chrX" and inheritance.startswith("XL")
    zygosity = rng.choice(
        ("Heterozygous", "Heterozygous", "Homozygous", "Hemizygous")
        if hemizygous_possible
        else ("Heterozygous", "Heterozygous", "Homozygous")
    )
    depth = rng.randint(18, 180)
    alt_reads = depth if zygosity != "Heterozygous" else max(1, int(depth * rng.uniform(0.35, 0.65)))
    return {
        "id": f"var-{index:03d}",
        "chrom": chrom,
        "pos": pos,
        "ref": ref,
        "alt": alt,
        "genome_build": "GRCh38",
        "gene": gene,
        "transcript": transcript,
        "hgvs_c": hgvs_c,
        "hgvs_p": hgvs_p,
        "effect": effect,
        "zygosity": zygosity,
        "acmg_classification": acmg,
        "pathogenicity_score": round(rng.uniform(low, high), 3),
        "inheritance": inheritance,
        "gnomad_af": round(rng.uniform(0, 0.002), 6)
        if acmg.endswith("pathogenic") or acmg == "Pathogenic"
        else round(rng.uniform(0, 0.05), 6),
        "read_depth": depth,
        "alt_reads": alt_reads,
        "genotype_quality": rng.randint(20, 99),
    }


def variants_for(case_name: str, count: int | None = None) -> list[dict[str, Any]]:
    """The full (export) variant records of ``case_name``: 5 to 40 (or ``count``), sorted by
    score, same every call."""
    rng = random.Random(f"emedgene-simulator:{case_name}")  # noqa: S311 - test data, not crypto
    drawn = rng.randint(MIN_VARIANTS, MAX_VARIANTS)
    records = [_variant(rng, i) for i in range(drawn if count is None else count)]
    records.sort(key=lambda v: (-v["pathogenicity_score"], v["chrom"], v["pos"]))
    return records


_CANDIDATE_KEYS = (
    "id",
    "gene",
    "chrom",
    "pos",
    "ref",
    "alt",
    "hgvs_c",
    "hgvs_p",
    "zygosity",
    "acmg_classification",
    "pathogenicity_score",
)


def candidates_for(case_name: str, count: int | None = None) -> list[dict[str, Any]]:
    """The candidate view of the same variants: fewer fields, as a review list shows them."""
    return [{k: v[k] for k in _CANDIDATE_KEYS} for v in variants_for(case_name, count)]


def genes_for(case_name: str) -> list[str]:
    """Genes the case's variants fall in, for the case's ``genes`` field."""
    return sorted({v["gene"] for v in variants_for(case_name)})
