"""Confluent Schema Registry's error answers: an HTTP status and an `error_code`."""
from __future__ import annotations


class RegistryError(Exception):
    def __init__(self, status: int, error_code: int, message: str):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict:
        return {"error_code": self.error_code, "message": self.message}


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found.")


def schema_not_found(what="") -> RegistryError:
    return RegistryError(404, 40403, f"Schema {what} not found".replace("  ", " ").strip())


def invalid_schema(detail: str) -> RegistryError:
    return RegistryError(422, 42201, f"Invalid schema: {detail}")


def invalid_version(version) -> RegistryError:
    return RegistryError(422, 42202, f"The specified version '{version}' is not a valid version "
                         "id. Allowed values are between [1, 2^31-1] and the string \"latest\"")


def incompatible(subject: str, messages: list[str]) -> RegistryError:
    detail = "; ".join(messages)
    return RegistryError(409, 409, "Schema being registered is incompatible with an earlier "
                         f"schema for subject \"{subject}\", details: [{detail}]")
