"""`medassist route`: which sources a question would be sent to, and how sure the router is."""

from __future__ import annotations

import json

import click

from assistant.cli.knowledge import out, shown


def register(main: click.Group) -> None:
    main.add_command(route)


@click.command()
@click.argument("questions", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {question, route, confidence, scores}.")
@click.pass_obj
def route(obj, questions, as_json):
    """Show the route (diagnosis, treatment, medication, general) and confidence for each QUESTION."""
    from assistant.router import Router
    from assistant.safety import check_question
    from index.embed import Embedder

    # compute_dtype as configured (MEDASSIST_COMPUTE_DTYPE too), as `ask` uses it
    router = Router(Embedder(compute_dtype=obj.config.compute_dtype))
    rows = []
    for question in map(check_question, questions):  # one refused the way `ask` refuses it
        name, confidence = router.route(question)
        rows.append({"question": question, "route": name, "confidence": round(confidence, 3),
                     "scores": {k: round(v, 3) for k, v in router.scores(question).items()}})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        out.print(f"[bold]{row['route']:<10}[/] {row['confidence']:.0%}  {shown(row['question'])}")
