"""Pure transformations."""


def normalize_names(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{**row, "name": row["name"].strip().title()} for row in rows]
