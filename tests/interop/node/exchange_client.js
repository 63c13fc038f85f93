'use strict';
// node-soap client of /soap/DocumentExchange (sessions from /soap/Auth); run by
// tests/interop/test_node_soap_client.py.
//
//   node exchange_client.js <auth-wsdl> <exchange-wsdl> <senderAccessKey> <senderSecretKey>
//                           <recipientAccessKey> <recipientSecretKey> <package-file> <received-file>
//                           <unknown-agency>
//
// The sender sends <package-file> with SendDocument, then asks for an upload space
// (RequestSendSpace) for the recipient and <unknown-agency>, given as an array under `recipient`
// (one repeated element per item): the hub must refuse the second with Client.UnknownRecipient.
// The recipient finds the package in
// GetPendingDocuments('edoc') by its hubDocumentId, fetches it (GetDocument), decodes and writes
// it to <received-file>, hashes it with node's crypto, confirms with a wrong digest (fault) then
// the right one; the sender reads the trace.  Prints one JSON object on stdout.
//
// node-soap does NOT encode or decode xs:base64Binary: a Buffer given as `edxmlPackage` is walked
// like an object (<edxmlPackage><0>60</0><1>63</1>...), so the client encodes with
// Buffer#toString('base64') and decodes the answer's string with Buffer.from(..., 'base64').
// What a Buffer produces is sent once too (`bufferPackage`): the hub must refuse it.

const crypto = require('node:crypto');
const fs = require('node:fs');
const soap = require('soap');

const NAMESPACE = 'urn:lgsp-esb:exchange:1';
const ALGORITHM = 'HMAC-SHA256';

function sign(secretKey, ...fields) {
  return crypto.createHmac('sha256', Buffer.from(secretKey, 'utf8')).update(fields.join('\n'), 'utf8').digest('base64');
}

function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

// A session key (no target: good for every hub service) from Auth.Authenticate.
async function sessionToken(auth, accessKey, secretKey) {
  const request = {
    accessKey,
    timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, '+00:00'),
    nonce: crypto.randomBytes(8).toString('hex'),
    algorithm: ALGORITHM,
  };
  request.signature = sign(secretKey, request.accessKey, request.timestamp, request.nonce, ALGORITHM, '');
  const [authenticated] = await auth.AuthenticateAsync(request);
  return authenticated.AuthenticateResult.sessionToken;
}

// From now on every call carries {urn:lgsp-esb:exchange:1}AuthHeader with this session key.
function actAs(client, token) {
  client.clearSoapHeaders();
  client.addSoapHeader({ AuthHeader: { sessionToken: token } }, '', 'tns', NAMESPACE);
}

// The fault of a call expected to fail: faultcode and the parsed <tns:EsbFault> detail.
async function expectFault(call) {
  try {
    await call();
  } catch (error) {
    const fault = error.root && error.root.Envelope && error.root.Envelope.Body && error.root.Envelope.Body.Fault;
    if (!fault) {
      throw error;
    }
    return { faultcode: fault.faultcode, faultstring: fault.faultstring, detail: fault.detail || null };
  }
  return null;
}

// node-soap gives a single occurrence of a maxOccurs="unbounded" element as an array only
// when the schema says so; be tolerant of both (and of an absent, empty list).
function list(value) {
  if (value === undefined || value === null) {
    return [];
  }
  return Array.isArray(value) ? value : [value];
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length !== 9) {
    console.error('usage: node exchange_client.js <auth-wsdl> <exchange-wsdl> <senderAccessKey> <senderSecretKey> '
      + '<recipientAccessKey> <recipientSecretKey> <package-file> <received-file> <unknown-agency>');
    process.exit(2);
  }
  const [authWsdl, exchangeWsdl, senderKey, senderSecret, recipientKey, recipientSecret, packageFile, receivedFile,
    unknownAgency] = args;
  const auth = await soap.createClientAsync(authWsdl);
  const exchange = await soap.createClientAsync(exchangeWsdl);
  const senderToken = await sessionToken(auth, senderKey, senderSecret);
  const recipientToken = await sessionToken(auth, recipientKey, recipientSecret);
  const outgoing = fs.readFileSync(packageFile);
  const result = { computedSha256: sha256(outgoing) };

  // -- sender
  actAs(exchange, senderToken);
  result.bufferPackage = await expectFault(() => exchange.SendDocumentAsync({ edxmlPackage: outgoing }));
  const [sent] = await exchange.SendDocumentAsync({ edxmlPackage: outgoing.toString('base64') });
  result.send = sent.SendDocumentResult;
  result.sendRequest = exchange.lastRequest;
  const hubId = result.send.hubDocumentId;

  const recipients = [list(result.send.recipient)[0].organId, unknownAgency];
  result.space = await expectFault(() => exchange.RequestSendSpaceAsync({
    recipient: recipients, subject: 'interop', priority: 2, dataType: 'edoc', protocol: 'edXML',
  }));
  result.spaceRequest = exchange.lastRequest;

  // -- recipient: the mailbox may hold other documents (the server is shared by the session)
  actAs(exchange, recipientToken);
  const [pending] = await exchange.GetPendingDocumentsAsync({ messageType: 'edoc' });
  const items = list(pending.GetPendingDocumentsResult && pending.GetPendingDocumentsResult.PendingDocument);
  result.pendingIsArray = Array.isArray(pending.GetPendingDocumentsResult.PendingDocument);
  result.pending = items.find((item) => item.hubDocumentId === hubId) || null;

  const [fetched] = await exchange.GetDocumentAsync({ hubDocumentId: hubId });
  const content = fetched.GetDocumentResult;
  const received = Buffer.from(content.edxmlPackage, 'base64');
  fs.writeFileSync(receivedFile, received);
  const digest = sha256(received);
  result.fetched = {
    hubDocumentId: content.hubDocumentId,
    sha256: content.sha256,
    size: content.size,
    packageType: typeof content.edxmlPackage,
    length: received.length,
    computedSha256: digest,
    downloadUrl: content.downloadUrl === undefined ? null : content.downloadUrl,
  };

  const wrong = (digest[0] === '0' ? '1' : '0') + digest.slice(1);
  result.mismatch = await expectFault(
    () => exchange.ConfirmReceivedAsync({ hubDocumentId: hubId, sha256: wrong, outcome: 'done' }),
  );
  const [confirmed] = await exchange.ConfirmReceivedAsync({ hubDocumentId: hubId, sha256: digest, outcome: 'done' });
  result.confirm = confirmed.ConfirmReceivedResult;

  // -- sender: the trace
  actAs(exchange, senderToken);
  const [trace] = await exchange.GetTraceAsync({ hubDocumentId: hubId });
  result.trace = trace.GetTraceResult;

  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  if (error && error.body) {
    console.error(error.body);
  }
  process.exit(1);
});
