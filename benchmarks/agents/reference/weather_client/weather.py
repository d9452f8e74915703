"""A client of a forecast service, with requests."""

import requests


class WeatherError(Exception):
    """The forecast could not be fetched."""


def fetch_forecast(base_url: str, city: str) -> dict:
    try:
        response = requests.get(f"{base_url}/forecast", params={"city": city}, timeout=5)
    except requests.RequestException as exc:
        raise WeatherError(f"cannot reach {base_url}: {exc}") from exc
    if response.status_code != 200:
        raise WeatherError(f"the service answered {response.status_code}")
    try:
        data = response.json()
    except ValueError as exc:
        raise WeatherError("the service did not answer JSON") from exc
    if not isinstance(data, dict):
        raise WeatherError("the service did not answer a JSON object")
    return data


def summary(base_url: str, city: str) -> str:
    forecast = fetch_forecast(base_url, city)
    return f"{forecast['city']}: {forecast['temp_c']} C, {forecast['sky']}"
