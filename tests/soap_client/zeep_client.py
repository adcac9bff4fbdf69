"""A SOAP client nobody in this project wrote (zeep) loads the served WSDLs, sends finansbilag (SF1590_A) over
SOAP 1.1 and 1.2 and a claim (SF1590_B), and prints what it read from the receipts as JSON for the Rust test."""

import datetime
import decimal
import json
import sys
import uuid

from zeep import Client, Settings

KY = "6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01"


def posting(posting_id, amount, side, funktion, dranst, art, **extra):
    today = datetime.date.today()
    p = {
        "PosteringId": posting_id,
        "Beloeb": decimal.Decimal(amount),
        "DebetKredit": side,
        "Posteringsdato": today,
        "Posteringstekst": "Sendt med zeep",
        "Kontering": {"Funktion": funktion, "Dranst": dranst, "Art": art},
    }
    p.update(extra)
    return p


def delivery_fields():
    """The delivery's own fields, the same for both integrations: a fresh LeveranceId from KY to us."""
    return {
        "LeveranceId": str(uuid.uuid4()),
        "AfsenderSystem": KY,
        "Myndighed": "29189846",
        "Dannet": datetime.datetime.now(datetime.timezone.utc),
    }


def send(service, bilag_id, counter_amount):
    today = datetime.date.today()
    result = service.ModtagFinansbilag(
        **delivery_fields(),
        Finansbilag=[
            {
                "BilagId": bilag_id,
                "Bilagsdato": today,
                "Postering": [
                    posting(1, "310.75", "D", "5.57.72", "1", "5.2", Valuta="DKK", Part={"CPR": "0101901234"}),
                    posting(2, counter_amount, "K", "9.51.01", "0", "9.5"),
                ],
            }
        ],
    )
    return receipts(result)


def send_claim(service, fordring_id):
    result = service.ModtagFordring(
        **delivery_fields(),
        Fordring=[
            {
                "FordringId": fordring_id,
                "Fordringstype": "KONTANT-TILB",
                "Hovedstol": decimal.Decimal("1999.95"),
                "Beskrivelse": "Tilbagebetaling, sendt med zeep",
                "PeriodeFra": datetime.date(2026, 8, 1),
                "PeriodeTil": datetime.date(2026, 8, 31),
                "Stiftelsesdato": datetime.date(2026, 9, 15),
                "Forfaldsdato": datetime.date(2026, 10, 1),
                "SidsteRettidigeBetalingsdato": datetime.date(2026, 10, 15),
                "Haefter": [
                    {
                        "Rolle": "JuridiskAnsvarlig",
                        "CPR": "0101901234",
                        "Navn": "Jens Jensen",
                        "Adresse": {"Vejnavn": "Byvej", "Husnummer": "12", "Postnummer": "2750", "By": "Ballerup"},
                    },
                    {
                        "Rolle": "JuridiskMedhaefter",
                        "CVR": "29189846",
                        "Navn": "Byens Vikarer ApS",
                        "Adresse": {"Vejnavn": "Torvet", "Husnummer": "1", "Postnummer": "2750", "By": "Ballerup"},
                    },
                ],
            }
        ],
    )
    return receipts(result)


def receipts(result):
    return {
        "LeveranceId": result.LeveranceId,
        "AfsenderSystem": result.AfsenderSystem,
        "receipts": [
            {
                "KvitteringId": k.KvitteringId,
                "Reference": k.Reference,
                "Status": k.Status,
                "ErpReference": k.ErpReference,
                "Fejl": [{"Kode": f.Kode, "Sti": f.Sti, "Linje": f.Linje, "Tekst": f.Tekst} for f in (k.Fejl or [])],
            }
            for k in result.Kvittering
        ],
    }


def main():
    base = sys.argv[1]
    client = Client(base + "/sf1590a?wsdl", settings=Settings(strict=True))
    soap11 = client.service
    soap12 = client.bind("FinansService", "FinansSoap12Port")
    out = {
        "soap11_accepted": send(soap11, "ZEEP-1", "310.75"),
        "soap11_rejected": send(soap11, "ZEEP-2", "300.00"),
        "soap12_accepted": send(soap12, "ZEEP-3", "310.75"),
        "claim_accepted": send_claim(Client(base + "/sf1590b?wsdl", settings=Settings(strict=True)).service, "ZEEP-F-1"),
    }
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
