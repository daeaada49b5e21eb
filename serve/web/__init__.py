"""The three apps people use, served by the platform itself: the storefront (/shop), the admin
portal with its live sale room (/admin) and the courier app (/courier). Pages are server-rendered
shells; their data comes from the JSON API, so every business rule lives once, in the API."""
