"""Greets someone, with click."""

import click


@click.command()
@click.argument("name")
@click.option("--shout", is_flag=True, help="Print the greeting in upper case.")
@click.option("--times", type=click.IntRange(min=1), default=1, help="How often to print it.")
@click.option("--greeting", default="Hello", help="The word to greet with.")
def main(name: str, shout: bool, times: int, greeting: str) -> None:
    line = f"{greeting}, {name}!"
    if shout:
        line = line.upper()
    for _ in range(times):
        click.echo(line)


if __name__ == "__main__":
    main()
