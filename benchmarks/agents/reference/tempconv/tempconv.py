"""Convert temperatures between Celsius, Fahrenheit and Kelvin."""

import argparse

UNITS = ("c", "f", "k")


def convert(value: float, from_unit: str, to_unit: str) -> float:
    if from_unit not in UNITS or to_unit not in UNITS:
        raise ValueError("units are c, f and k")
    celsius = {"c": value, "f": (value - 32) * 5 / 9, "k": value - 273.15}[from_unit]
    return {"c": celsius, "f": celsius * 9 / 5 + 32, "k": celsius + 273.15}[to_unit]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("value", type=float)
    parser.add_argument("--from", dest="from_unit", choices=UNITS, required=True)
    parser.add_argument("--to", dest="to_unit", choices=UNITS, required=True)
    args = parser.parse_args()
    print(round(convert(args.value, args.from_unit, args.to_unit), 2))


if __name__ == "__main__":
    main()
